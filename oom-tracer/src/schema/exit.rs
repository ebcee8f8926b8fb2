//! How a process or a container ended, and why.
use serde::{Deserialize, Serialize};

/// Why a process died of SIGKILL or exited with 137 (see `analyse::verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// The memory-cgroup OOM killer chose this process.
    MemcgOom,
    /// The system-wide OOM killer chose it.
    GlobalOom,
    /// Someone else sent SIGKILL.
    SigkillOther,
    /// It exited with 137 by itself and no OOM kill happened in its cgroup.
    #[serde(rename = "exit_137_no_oom")]
    Exit137NoOom,
}

impl Verdict {
    #[cfg(test)]
    pub(crate) const ALL: [Self; 4] = [
        Self::MemcgOom,
        Self::GlobalOom,
        Self::SigkillOther,
        Self::Exit137NoOom,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::MemcgOom => "memcg_oom",
            Self::GlobalOom => "global_oom",
            Self::SigkillOther => "sigkill_other",
            Self::Exit137NoOom => "exit_137_no_oom",
        }
    }
}

/// The sender of the SIGKILL that killed a process, when it was not the OOM killer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KilledBy {
    pub pid: u32,
    pub comm: String,
    pub from_kernel: bool,
}

/// Kubernetes' reason for a container's end (`lastState.terminated.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum ExitReason {
    /// An OOM kill happened in the container (the runtime's rule).
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// It exited with a non-zero code or was killed.
    Error,
    /// It exited with 0.
    Completed,
}

impl ExitReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::OomKilled => "OOMKilled",
            Self::Error => "Error",
            Self::Completed => "Completed",
        }
    }
}

/// A container's state in Kubernetes' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum ContainerState {
    Running,
    CrashLoopBackOff,
    Terminated,
}

impl ContainerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::CrashLoopBackOff => "CrashLoopBackOff",
            Self::Terminated => "Terminated",
        }
    }
}
