//! The parts of a `cycle` record: one container attempt, analysed.
use serde::{Deserialize, Serialize};

use super::{ExitReason, Timestamp, Trigger, Verdict, Victim, oom::OomKind};

/// The allocation ramp of one attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Ramp {
    pub started_at: Timestamp,
    pub first_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// Growth of anonymous memory from the first to the last sample, MiB/s.
    pub growth_mib_per_s: Option<f64>,
    /// From the container's start (else the first sample) to the OOM kill.
    pub time_to_limit_ms: Option<u64>,
    pub samples: u32,
}

/// The first OOM of an attempt, with every victim it took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Incident {
    pub kind: OomKind,
    pub at: Timestamp,
    pub trigger: Trigger,
    pub victims: Vec<Victim>,
    /// More than one victim: the whole group was killed (memory.oom.group).
    pub group_kill: bool,
}

/// How the attempt ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct CycleExit {
    pub at: Timestamp,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: ExitReason,
    pub verdict: Option<Verdict>,
    pub ran_ms: u64,
}

/// The restart after the attempt, against the kubelet's schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct CycleRestart {
    pub restart_count: u32,
    pub observed_backoff_ms: u64,
    /// What the kubelet's schedule (--backoff-initial/-max/-reset) predicts.
    pub expected_backoff_ms: u64,
    pub deviation_ms: i64,
    /// The wait before the restart after this one, if it crashes again.
    pub next_expected_backoff_ms: u64,
    /// When that restart would happen if the next run is as long as this one.
    pub next_restart_predicted_at: Timestamp,
}
