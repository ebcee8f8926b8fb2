//! Pod and container metadata from the container runtime (CRI): the labels
//! the kubelet puts on every sandbox and container. Works with no API server.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    ListContainersRequest, ListPodSandboxRequest, runtime_service_client::RuntimeServiceClient,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::schema::{ContainerRef, PodRef};

/// Sockets tried when none is configured, in order.
pub(crate) const DEFAULT_SOCKETS: [&str; 4] = [
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/run/cri-dockerd.sock",
];

const POD_NAME: &str = "io.kubernetes.pod.name";
const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const POD_UID: &str = "io.kubernetes.pod.uid";
const CONTAINER_NAME: &str = "io.kubernetes.container.name";
const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

#[derive(Debug, thiserror::Error)]
pub(crate) enum CriError {
    #[error("no CRI socket found (tried {tried})")]
    NoSocket { tried: String },
    #[error("connecting to the CRI socket {socket}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("CRI {call} on {socket}")]
    Call {
        call: &'static str,
        socket: PathBuf,
        #[source]
        source: tonic::Status,
    },
    #[error("CRI {call} on {socket} timed out")]
    Timeout { call: &'static str, socket: PathBuf },
}

/// What the runtime knows now.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    /// Pod sandbox (pause container) ids.
    pub sandboxes: HashMap<String, PodRef>,
    /// Container id → its pod and itself.
    pub containers: HashMap<String, (PodRef, ContainerRef)>,
}

pub(crate) struct Cri {
    socket: PathBuf,
    client: Option<RuntimeServiceClient<Channel>>,
}

/// The configured socket, or the first default that exists.
pub(crate) fn pick_socket(configured: Option<&Path>) -> Result<PathBuf, CriError> {
    if let Some(p) = configured {
        return Ok(p.to_owned());
    }
    DEFAULT_SOCKETS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| CriError::NoSocket {
            tried: DEFAULT_SOCKETS.join(", "),
        })
}

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

impl Cri {
    pub(crate) fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            client: None,
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    async fn client(&mut self) -> Result<RuntimeServiceClient<Channel>, CriError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let path = self.socket.clone();
        let channel =
            Endpoint::try_from("http://[::]:50051")
                .map_err(|source| CriError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?
                .connect_timeout(CALL_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(|source| CriError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let c = RuntimeServiceClient::new(channel);
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Lists every sandbox and container; drops the connection on error so
    /// the next call reconnects (the runtime may have restarted).
    pub(crate) async fn snapshot(&mut self) -> Result<Snapshot, CriError> {
        let r = self.snapshot_inner().await;
        if r.is_err() {
            self.client = None;
        }
        r
    }

    async fn snapshot_inner(&mut self) -> Result<Snapshot, CriError> {
        let mut c = self.client().await?;
        let socket = self.socket.clone();
        let timeout = |call| CriError::Timeout {
            call,
            socket: socket.clone(),
        };
        let sb = tokio::time::timeout(
            CALL_TIMEOUT,
            c.list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .await
        .map_err(|_| timeout("ListPodSandbox"))?
        .map_err(|source| CriError::Call {
            call: "ListPodSandbox",
            socket: self.socket.clone(),
            source,
        })?
        .into_inner();
        let ct = tokio::time::timeout(
            CALL_TIMEOUT,
            c.list_containers(ListContainersRequest { filter: None }),
        )
        .await
        .map_err(|_| timeout("ListContainers"))?
        .map_err(|source| CriError::Call {
            call: "ListContainers",
            socket: self.socket.clone(),
            source,
        })?
        .into_inner();
        let mut snap = Snapshot::default();
        for s in sb.items {
            let md = s.metadata.unwrap_or_default();
            let pod = PodRef {
                namespace: s
                    .labels
                    .get(POD_NAMESPACE)
                    .cloned()
                    .or(Some(md.namespace).filter(|n| !n.is_empty())),
                name: s
                    .labels
                    .get(POD_NAME)
                    .cloned()
                    .or(Some(md.name).filter(|n| !n.is_empty())),
                uid: s.labels.get(POD_UID).cloned().unwrap_or(md.uid),
            };
            snap.sandboxes.insert(s.id, pod);
        }
        for c in ct.containers {
            let md = c.metadata.unwrap_or_default();
            let pod = snap
                .sandboxes
                .get(&c.pod_sandbox_id)
                .cloned()
                .unwrap_or_else(|| PodRef {
                    namespace: c.labels.get(POD_NAMESPACE).cloned(),
                    name: c.labels.get(POD_NAME).cloned(),
                    uid: c.labels.get(POD_UID).cloned().unwrap_or_default(),
                });
            let restart_count = c
                .annotations
                .get(RESTART_COUNT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(md.attempt);
            let container = ContainerRef {
                id: c.id.clone(),
                name: c
                    .labels
                    .get(CONTAINER_NAME)
                    .cloned()
                    .or(Some(md.name).filter(|n| !n.is_empty())),
                restart_count: Some(restart_count),
            };
            snap.containers.insert(c.id, (pod, container));
        }
        Ok(snap)
    }
}
