//! The output schema: one JSON object per line on stdout.
//!
//! Every record has `v` (the schema version, [`SCHEMA_VERSION`]), `event`
//! and `time` (RFC 3339, UTC). docs/schema.md documents each event; the
//! names here are the contract and only grow within a version.
use serde::Serialize;

use crate::verdict::{KilledBy, Verdict};

/// Bumped on any incompatible change to a record.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Record {
    pub v: u32,
    pub time: String,
    #[serde(flatten)]
    pub body: Body,
}

impl Record {
    pub fn new(time: String, body: Body) -> Self {
        Self {
            v: SCHEMA_VERSION,
            time,
            body,
        }
    }

    pub fn event(&self) -> &'static str {
        self.body.name()
    }
}

/// Kubernetes identity of the pod a record belongs to. `namespace` and
/// `name` are null where no metadata source knew them (the uid comes from
/// the cgroup path).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: String,
}

/// The container a record belongs to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainerRef {
    pub name: Option<String>,
    pub id: String,
    pub restart_count: Option<u32>,
}

/// A process as seen by the kernel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Victim {
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

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Trigger {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub cgroup: Option<String>,
}

/// Which limit was hit, relative to the victim's container.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitLevel {
    Container,
    Pod,
    /// Another ancestor (a QoS class or node-level cgroup).
    Ancestor,
}

/// The memory cgroup that hit its limit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Memcg {
    pub id: u64,
    pub path: Option<String>,
    pub level: Option<LimitLevel>,
    pub usage_bytes: u64,
    pub limit_bytes: u64,
    /// v1: the page counter's failcnt; v2: `memory.events` `max` (v2 keeps
    /// no failcnt); null where neither could be read.
    pub failcnt: Option<u64>,
}

/// The tracer's hooks, as attached at startup.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HookStatus {
    pub active: Vec<String>,
    pub missing: Vec<MissingHook>,
}

/// Kernel run time of one program over the tracer's life (bpf_stats).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HookStat {
    pub program: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MissingHook {
    pub hook: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Body {
    /// The tracer started.
    Start {
        version: String,
        mode: String,
        kernel: String,
        cgroup_version: Option<String>,
        hooks: HookStatus,
        /// Time to load and attach the eBPF programs.
        startup_ms: u64,
    },
    /// A container started: `run` created its cgroup and started the
    /// workload, or the agent saw its first process (or, `discovered`,
    /// found it running at startup).
    ContainerStart {
        pod: PodRef,
        container: ContainerRef,
        cgroup: String,
        pid: u32,
        command: Vec<String>,
        memory_limit_bytes: Option<u64>,
        pod_memory_limit_bytes: Option<u64>,
        discovered: bool,
    },
    /// A process exec'd in a traced cgroup.
    Exec {
        #[serde(flatten)]
        proc: Proc,
        cgroup: Option<String>,
        pod: Option<PodRef>,
        container: Option<ContainerRef>,
    },
    /// A process's anonymous memory grew by another step.
    Alloc {
        #[serde(flatten)]
        proc: Proc,
        anon_rss_bytes: u64,
        limit_bytes: Option<u64>,
        cgroup: Option<String>,
        pod: Option<PodRef>,
        container: Option<ContainerRef>,
    },
    /// SIGKILL generated for a traced task.
    Signal {
        signal: u32,
        si_code: i32,
        /// The kernel sent it (si_code SI_KERNEL), as the OOM killer does.
        from_kernel: bool,
        target: Proc,
        sender: Proc,
        cgroup: Option<String>,
        pod: Option<PodRef>,
        container: Option<ContainerRef>,
    },
    /// The kernel's OOM killer chose a victim.
    OomKill {
        /// `memcg` (a cgroup hit its limit) or `global` (the machine ran out).
        kind: String,
        victim: Victim,
        trigger: Trigger,
        memcg: Option<Memcg>,
        victim_cgroup: Option<String>,
        source: String,
        pod: Option<PodRef>,
        container: Option<ContainerRef>,
    },
    /// A process exited (thread-group leader).
    Exit {
        #[serde(flatten)]
        proc: Proc,
        /// The signal that killed it, if one did (9 for an OOM kill).
        signal: Option<u32>,
        /// Its exit status, if it exited.
        exit_code: Option<u32>,
        core_dumped: bool,
        /// Why a SIGKILL or exit 137 happened (`memcg_oom`, `global_oom`,
        /// `sigkill_other`, `exit_137_no_oom`); null for other exits.
        verdict: Option<Verdict>,
        /// Who sent the SIGKILL, for `sigkill_other` (when seen).
        killed_by: Option<KilledBy>,
        cgroup: Option<String>,
        pod: Option<PodRef>,
        container: Option<ContainerRef>,
    },
    /// The container's main process ended, in the runtime's words.
    ContainerExit {
        pod: PodRef,
        container: ContainerRef,
        /// 128 + signal for a killed process (137 for SIGKILL).
        exit_code: i32,
        signal: Option<i32>,
        /// Kubernetes' reason: OOMKilled, Error or Completed. Like the
        /// runtime, OOMKilled means an OOM kill happened in the container.
        reason: String,
        /// What really ended the main process (see `exit`).
        verdict: Option<Verdict>,
        ran_ms: u64,
    },
    /// The container waits before its restart (kubelet back-off).
    Backoff {
        pod: PodRef,
        container: ContainerRef,
        /// Kubernetes' waiting reason.
        state: String,
        backoff_ms: u64,
        next_restart_at: String,
    },
    /// The container was restarted.
    Restart {
        pod: PodRef,
        container: ContainerRef,
        restart_count: u32,
        backoff_ms: u64,
        last_reason: String,
    },
    /// One container attempt, analysed: after its kill → restart, and at
    /// shutdown (see `cycle.rs`).
    Cycle {
        pod: Option<PodRef>,
        container: Option<ContainerRef>,
        /// Kubernetes' words for the container now: Running, CrashLoopBackOff, Terminated.
        state: String,
        /// Kubernetes' reason for the attempt's end: OOMKilled, Error, Completed.
        last_state_reason: Option<String>,
        ramp: Option<crate::cycle::Ramp>,
        /// The memcg that hit its limit.
        limit: Option<Memcg>,
        /// The first OOM of the attempt, with every victim it took.
        incident: Option<crate::cycle::Incident>,
        oom_incidents: u32,
        exit: Option<crate::cycle::CycleExit>,
        restart: Option<crate::cycle::CycleRestart>,
    },
    /// A memory cgroup was created or removed.
    CgroupMkdir {
        id: u64,
        path: String,
        level: u32,
    },
    CgroupRmdir {
        id: u64,
        path: String,
        level: u32,
    },
    /// Records the kernel could not hand over (ring buffer full).
    Lost {
        ringbuf_full: u64,
        read_errors: u64,
    },
    /// The tracer stopped.
    Stop {
        reason: String,
        restarts: u32,
        oom_kills: u64,
        records: u64,
        lost_events: u64,
        decode_errors: u64,
        unresolved_cgroups: u64,
        /// Per-program kernel cost; empty unless kernel.bpf_stats_enabled=1.
        hook_stats: Vec<HookStat>,
    },
}

impl Body {
    pub fn name(&self) -> &'static str {
        match self {
            Body::Start { .. } => "start",
            Body::ContainerStart { .. } => "container_start",
            Body::Exec { .. } => "exec",
            Body::Alloc { .. } => "alloc",
            Body::Signal { .. } => "signal",
            Body::OomKill { .. } => "oom_kill",
            Body::Exit { .. } => "exit",
            Body::ContainerExit { .. } => "container_exit",
            Body::Backoff { .. } => "backoff",
            Body::Restart { .. } => "restart",
            Body::Cycle { .. } => "cycle",
            Body::CgroupMkdir { .. } => "cgroup_mkdir",
            Body::CgroupRmdir { .. } => "cgroup_rmdir",
            Body::Lost { .. } => "lost",
            Body::Stop { .. } => "stop",
        }
    }
}

/// A kernel byte string (comm, cgroup path) as text, losslessly: invalid
/// UTF-8 bytes become `\xNN` and a backslash becomes `\\`, so odd names
/// never break a line and two different names never print the same.
pub fn lossless_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_has_v_event_time() {
        let r = Record::new(
            "2026-11-27T18:00:00.000000Z".into(),
            Body::Lost {
                ringbuf_full: 3,
                read_errors: 0,
            },
        );
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["event"], "lost");
        assert_eq!(v["time"], "2026-11-27T18:00:00.000000Z");
        assert_eq!(v["ringbuf_full"], 3);
        assert_eq!(r.event(), "lost");
    }

    #[test]
    fn exit_flattens_the_process() {
        let r = Record::new(
            "t".into(),
            Body::Exit {
                proc: Proc {
                    pid: 7,
                    tgid: 7,
                    comm: "stress".into(),
                },
                signal: Some(9),
                exit_code: None,
                core_dumped: false,
                verdict: Some(Verdict::MemcgOom),
                killed_by: None,
                cgroup: Some("/oom-tracer/pod/ctr".into()),
                pod: None,
                container: None,
            },
        );
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["event"], "exit");
        assert_eq!(v["pid"], 7);
        assert_eq!(v["comm"], "stress");
        assert_eq!(v["signal"], 9);
        assert!(v["exit_code"].is_null());
    }

    #[test]
    fn odd_names_stay_valid_json() {
        let s = lossless_text(b"a \"q\"\xff\xfe\n");
        assert_eq!(s, "a \"q\"\\xff\\xfe\n");
        // A real backslash followed by "xff" differs from the byte 0xff.
        assert_eq!(lossless_text(b"\\xff"), "\\\\xff");
        assert_ne!(lossless_text(b"\\xff"), lossless_text(b"\xff"));
        let line = serde_json::to_string(&s).unwrap();
        assert!(!line.contains('\n'));
        let back: String = serde_json::from_str(&line).unwrap();
        assert_eq!(back, s);
    }
}
