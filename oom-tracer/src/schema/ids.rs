//! Who a record is about: the pod, the container, the process.
use serde::{Deserialize, Serialize};

/// Kubernetes identity of the pod a record belongs to. `namespace` and
/// `name` are null where no metadata source knew them (the uid comes from
/// the cgroup path).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub(crate) struct PodRef {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: String,
}

/// The container a record belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub(crate) struct ContainerRef {
    pub name: Option<String>,
    pub id: String,
    pub restart_count: Option<u32>,
}

/// A process as the kernel sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Proc {
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// The kernel's 15-byte task name (see `lossless_text`).
    pub comm: String,
}
