//! The parts of an `oom_kill` record.
use serde::{Deserialize, Serialize};

/// Whether a memory cgroup hit its limit or the whole machine ran out.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OomKind {
    #[default]
    Memcg,
    Global,
}

/// Which program saw the kill.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
pub(crate) enum OomSource {
    #[serde(rename = "tp_btf/mark_victim")]
    #[default]
    TpBtf,
    #[serde(rename = "tracepoint/oom/mark_victim")]
    Tracepoint,
}

/// The process the OOM killer chose, read in the kernel at the kill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub(crate) struct Victim {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub anon_rss_bytes: Option<u64>,
    pub file_rss_bytes: Option<u64>,
    pub shmem_rss_bytes: Option<u64>,
    pub total_vm_bytes: Option<u64>,
    pub oom_score_adj: Option<i32>,
    pub uid: Option<u32>,
}

/// The task whose allocation ran into the limit (`current` at the kill).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub(crate) struct Trigger {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub cgroup: Option<String>,
}

/// Which limit was hit, relative to the victim's container.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LimitLevel {
    Container,
    Pod,
    /// Another ancestor (a QoS class or node-level cgroup).
    Ancestor,
}

impl LimitLevel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Container => "container",
            Self::Pod => "pod",
            Self::Ancestor => "ancestor",
        }
    }
}

/// The memory cgroup that hit its limit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Memcg {
    pub id: u64,
    pub path: Option<String>,
    pub level: Option<LimitLevel>,
    pub usage_bytes: u64,
    pub limit_bytes: u64,
    /// v1: the page counter's failcnt; v2: `memory.events` `max` (v2 keeps
    /// no failcnt); null where neither could be read.
    pub failcnt: Option<u64>,
}
