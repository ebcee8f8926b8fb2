//! A stand-in for the kubelet's container path, driving a real containerd
//! over the CRI: pod sandboxes with the kubelet's cgroup parent and labels,
//! containers with memory limits, and restarts with back-off. The runtime
//! is the one `tests/containerd/setup.sh` starts.

use std::{collections::HashMap, path::Path, time::Duration};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, Image, ImageSpec, ImageStatusRequest, LinuxContainerConfig,
    LinuxContainerResources, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StatusRequest,
    StopContainerRequest, StopPodSandboxRequest, image_service_client::ImageServiceClient,
    runtime_service_client::RuntimeServiceClient,
};
use tokio::net::UnixStream;

mod lifecycle;
pub(crate) use lifecycle::run_to_exit;
use tonic::transport::{Channel, Endpoint, Uri};

pub(crate) const SOCKET: &str = "/run/oom-tracer-test/containerd.sock";
pub(crate) const STRESS_IMAGE: &str = "localhost/oom-tracer/stress:test";
/// NamespaceMode NODE: host network (the test runtime has no CNI).
const NODE: i32 = 2;

/// Fails the test, naming what to run, unless the test runtime is up.
pub(crate) fn require_runtime() {
    super::require_root();
    assert!(
        Path::new(SOCKET).exists(),
        "the test containerd is not running ({SOCKET} missing): run tests/containerd/setup.sh \
         (cargo xtask test does)"
    );
    // A socket left from an earlier boot exists but nobody listens on it.
    if let Err(e) = std::os::unix::net::UnixStream::connect(SOCKET) {
        panic!(
            "the test containerd does not answer on {SOCKET} ({e}): the socket is stale or \
             containerd died; run tests/containerd/setup.sh (cargo xtask test does) and see \
             /var/log/oom-tracer-test-containerd.log"
        );
    }
}

/// A container the runtime could not create or start.
#[derive(Debug)]
pub(crate) struct StartError {
    pub call: &'static str,
    /// The container, where it was created.
    pub container: Option<String>,
    pub status: tonic::Status,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, self.status.message())
    }
}

pub(crate) struct Pod {
    pub sandbox_id: String,
    pub config: PodSandboxConfig,
    pub uid: String,
    pub name: String,
    pub namespace: String,
}

pub(crate) struct Kubelet {
    rt: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// A uuid-shaped uid, unique per call.
pub(crate) fn new_uid() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 40);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (n >> 32) as u32,
        (n >> 16) & 0xffff,
        n & 0xfff,
        (n >> 20) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// The usual hog: 5Mi every 20 ms into a 50Mi limit.
pub(crate) const HOG: ContainerSpec<'static> = ContainerSpec {
    name: "hog",
    args: &["--step", "5Mi", "--interval", "20ms"],
    memory_limit: Some(50 << 20),
};

pub(crate) struct ContainerSpec<'a> {
    pub name: &'a str,
    pub args: &'a [&'a str],
    pub memory_limit: Option<i64>,
}

impl Kubelet {
    pub(crate) async fn connect() -> Self {
        // The kubelet creates the QoS cgroups when it starts, before any pod.
        for qos in ["kubepods/burstable", "kubepods/besteffort"] {
            for root in ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"] {
                if Path::new(root).join("cgroup.procs").exists()
                    || Path::new(root).join("memory.limit_in_bytes").exists()
                {
                    let _ = std::fs::create_dir_all(Path::new(root).join(qos));
                    break;
                }
            }
        }
        let channel = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(|_: Uri| async {
                Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(SOCKET).await?))
            }))
            .await
            .expect("connecting to the test containerd");
        Self {
            rt: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    /// RunPodSandbox with a whole config (e.g. from `podspec::translate`);
    /// returns the sandbox id.
    pub(crate) async fn run_sandbox(&mut self, config: &PodSandboxConfig) -> String {
        let _ = std::fs::create_dir_all(&config.log_directory);
        self.rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {}", e.message()))
            .into_inner()
            .pod_sandbox_id
    }

    /// The sandbox's pod IP (empty for host-network pods).
    pub(crate) async fn sandbox_ip(&mut self, sandbox_id: &str) -> String {
        self.rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.into(),
                verbose: false,
            })
            .await
            .expect("PodSandboxStatus")
            .into_inner()
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default()
    }

    /// StopPodSandbox + RemovePodSandbox (which removes its containers).
    pub(crate) async fn remove_sandbox(&mut self, sandbox_id: &str) {
        let _ = self
            .rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            })
            .await;
        let _ = self
            .rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            })
            .await;
    }

    /// CreateContainer + StartContainer with a whole config; returns the id.
    pub(crate) async fn create_start(
        &mut self,
        sandbox_id: &str,
        sandbox: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> String {
        let id = self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {}", e.message()))
            .into_inner()
            .container_id;
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {id}: {}", e.message()));
        id
    }

    /// ContainerStatus.
    pub(crate) async fn status(&mut self, id: &str) -> ContainerStatus {
        self.rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("status")
    }

    /// StopContainer with a grace period (SIGTERM, then SIGKILL after it).
    pub(crate) async fn stop_container(&mut self, id: &str, grace: Duration) {
        self.rt
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: grace.as_secs().try_into().unwrap(),
            })
            .await
            .expect("StopContainer");
    }

    /// Whether the runtime's default handler makes read-only mounts
    /// recursively read-only (RuntimeStatus; a runtime that predates the
    /// field reports no handlers: no).
    pub(crate) async fn recursive_read_only(&mut self) -> bool {
        let st = self
            .rt
            .status(StatusRequest { verbose: false })
            .await
            .expect("Status")
            .into_inner();
        st.runtime_handlers
            .iter()
            .find(|h| h.name.is_empty())
            .and_then(|h| h.features.as_ref())
            .is_some_and(|f| f.recursive_read_only_mounts)
    }

    /// ImageStatus: the image if the runtime has it.
    pub(crate) async fn image(&mut self, image: &str) -> Option<Image> {
        self.images
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .expect("ImageStatus")
            .into_inner()
            .image
    }

    /// RunPodSandbox as the kubelet does it with the cgroupfs driver.
    pub(crate) async fn run_pod(&mut self, namespace: &str, name: &str) -> Pod {
        self.try_run_pod(namespace, name, &new_uid())
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {}", e.message()))
    }

    /// RunPodSandbox for pod `uid` (its cgroup: /kubepods/burstable/pod<uid>);
    /// the runtime's error as it is.
    pub(crate) async fn try_run_pod(
        &mut self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<Pod, tonic::Status> {
        let uid = uid.to_owned();
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", namespace),
            ("io.kubernetes.pod.uid", uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            labels,
            log_directory: format!("/var/log/oom-tracer-test/pods/{uid}"),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/burstable/pod{uid}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NODE,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = std::fs::create_dir_all(&config.log_directory);
        let sandbox_id = self
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        Ok(Pod {
            sandbox_id,
            config,
            uid,
            name: name.into(),
            namespace: namespace.into(),
        })
    }

    /// CreateContainer + StartContainer, with the kubelet's labels and attempt.
    pub(crate) async fn start(
        &mut self,
        pod: &Pod,
        spec: &ContainerSpec<'_>,
        attempt: u32,
    ) -> String {
        self.try_start(pod, spec, attempt)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Kubelet::start`], with the runtime's error as it is (and the
    /// container, where it was created but did not start).
    pub(crate) async fn try_start(
        &mut self,
        pod: &Pod,
        spec: &ContainerSpec<'_>,
        attempt: u32,
    ) -> Result<String, StartError> {
        let mut labels = pod.config.labels.clone();
        labels.insert("io.kubernetes.container.name".into(), spec.name.into());
        let annotations: HashMap<String, String> = [(
            "io.kubernetes.container.restartCount".to_owned(),
            attempt.to_string(),
        )]
        .into();
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: spec.name.into(),
                attempt,
            }),
            image: Some(ImageSpec {
                image: STRESS_IMAGE.into(),
                ..Default::default()
            }),
            args: spec.args.iter().map(|s| (*s).to_owned()).collect(),
            labels,
            annotations,
            log_path: format!("{}_{attempt}.log", spec.name),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    memory_limit_in_bytes: spec.memory_limit.unwrap_or(0),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .map_err(|status| StartError {
                call: "CreateContainer",
                container: None,
                status,
            })?
            .into_inner()
            .container_id;
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(|status| StartError {
                call: "StartContainer",
                container: Some(id.clone()),
                status,
            })?;
        Ok(id)
    }

    pub(crate) async fn remove_container(&mut self, id: &str) {
        let _ = self
            .rt
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: 0,
            })
            .await;
        let _ = self
            .rt
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await;
    }

    pub(crate) async fn remove_pod(&mut self, pod: &Pod) {
        let _ = self
            .rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
            })
            .await;
        let _ = self
            .rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
            })
            .await;
    }
}
