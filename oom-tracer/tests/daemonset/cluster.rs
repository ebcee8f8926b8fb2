//! What stands in for the cluster around the DaemonSet test: the node and
//! the API server, the images in the test runtime, and the cleanup of what
//! a test created.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::OnceLock,
};

use crate::common::{
    apiserver::ApiServer,
    deploy,
    kubelet::Kubelet,
    node, pki,
    podspec::{self, Node, PodPlan},
};

/// A runtime for the CRI calls, on this thread.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Where `cargo xtask images` writes the image archives.
pub(crate) fn images_dir() -> PathBuf {
    deploy::workspace().join("target/images")
}

/// Imports both images into the test runtime, once per test binary.
pub(crate) fn import_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for name in ["agent", "stress"] {
            let names = node::import_image(&images_dir().join(format!("{name}.tar")));
            eprintln!("imported {name}.tar: {names:?}");
        }
    });
}

/// The node, the API server stand-in and the cluster's CA.
pub(crate) struct Cluster {
    pub(crate) node: Node,
    pub(crate) api: ApiServer,
}

impl Cluster {
    /// The API server serves the agent's service account (`namespace`/`sa`).
    pub(crate) fn start(namespace: &str, sa: &str) -> Self {
        let gateway = node::pod_gateway();
        let pki = pki::for_ip(gateway);
        let name = format!("node-{}", &crate::common::kubelet::new_uid()[..8]);
        let mut node = Node {
            name: name.clone(),
            labels: [
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/hostname", name.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            api: SocketAddr::new(gateway, 0),
            ca_pem: pki.ca_pem,
            host_paths: vec![(
                "/run/containerd",
                PathBuf::from("/run/oom-tracer-test"),
                "the node's containerd runs here with its socket at \
                 /run/oom-tracer-test/containerd.sock",
            )],
            pods_dir: PathBuf::from(node::PODS_DIR),
            logs_dir: PathBuf::from(node::LOGS_DIR),
            memory_capacity: podspec::mem_total(),
            recursive_read_only: rt()
                .block_on(async { Kubelet::connect().await.recursive_read_only().await }),
        };
        // Pods reach the API server at the gateway; it listens on every
        // address of the node (the bridge is created with the first pod).
        let api = ApiServer::start_tls(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            pki.server,
            &node.token(namespace, sa),
        );
        node.api = SocketAddr::new(gateway, api.port);
        Self { node, api }
    }
}

/// Removes what a test created, however it ends.
#[derive(Default)]
pub(crate) struct Cleanup {
    pub(crate) sandboxes: Vec<String>,
    /// (the pod's directory, its cgroup, its log directory)
    pods: Vec<(PathBuf, String, PathBuf)>,
}

impl Cleanup {
    pub(crate) fn pod(&mut self, plan: &PodPlan) {
        self.pods.push((
            plan.dir.clone(),
            plan.cgroup.path.clone(),
            PathBuf::from(&plan.sandbox.log_directory),
        ));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sandboxes = std::mem::take(&mut self.sandboxes);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt().block_on(async {
                let mut k = Kubelet::connect().await;
                for s in &sandboxes {
                    k.remove_sandbox(s).await;
                }
            });
        }));
        for (dir, cgroup, logs) in &self.pods {
            node::clean(dir, cgroup);
            // The kubelet deletes a pod's logs with the pod; a failed test
            // keeps them to be read.
            if std::thread::panicking() {
                eprintln!("the pod's logs are kept in {}", logs.display());
            } else {
                let _ = std::fs::remove_dir_all(logs);
            }
        }
    }
}
