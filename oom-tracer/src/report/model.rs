//! One timeline per container ("lane"), as the picture needs it.
//!
//! The types of the picture: lanes, attempts, limits, kills, exits and
//! gaps. `input.rs` reads records into them (with `parse.rs` and
//! `lanes.rs`); `svg.rs` draws them.
use crate::schema::{AllocKind, OomKind, Part};

/// Limits at or above this are "unlimited" (cgroup v1 reports
/// PAGE_COUNTER_MAX pages as bytes, v2 `max`): no line for them.
pub(super) const UNLIMITED: u64 = 1 << 60;

pub(super) const MIB: f64 = (1u64 << 20) as f64;

/// Everything the picture needs, times in seconds since the first record.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub lanes: Vec<Lane>,
    /// Records with a valid envelope (any event).
    pub records: usize,
    /// Non-empty lines that were not records (not JSON, no `v`/`event`/`time`,
    /// a time that does not parse, not UTF-8) and known events that lack a
    /// needed field.
    pub skipped: usize,
    /// Records of another schema version (skipped).
    pub other_version: usize,
    /// Seconds from the first record to the last.
    pub span_s: f64,
}

/// One container: all its attempts (restarts share a lane).
#[derive(Debug, Clone)]
pub(super) struct Lane {
    /// `namespace/pod/container`, or `cgroup:<path>` without Kubernetes identity.
    pub key: String,
    /// For people: `namespace/pod · container`, or the cgroup path.
    pub title: String,
    /// In time order.
    pub attempts: Vec<Attempt>,
    /// Distinct limit lines, container limit first.
    pub limits: Vec<LimitLine>,
    pub kills: Vec<Kill>,
    /// One per attempt that ended (the container's exit, else its main
    /// process's exit).
    pub exits: Vec<ExitMark>,
    /// Restart back-off intervals: an attempt's exit → the next attempt.
    pub gaps: Vec<Gap>,
    /// `restart` records seen (else attempts − 1).
    pub restarts: usize,
    /// When the lane's first record happened.
    pub first_s: f64,
}

impl Lane {
    /// The largest memory value drawn (usage, kills, limits), in MiB.
    pub(super) fn max_mib(&self) -> f64 {
        let usage = self
            .attempts
            .iter()
            .flat_map(|a| &a.series)
            .flat_map(|s| &s.points)
            .map(|p| p.1);
        let kills = self.kills.iter().map(|k| k.mib);
        let limits = self.limits.iter().map(|l| l.bytes as f64 / MIB);
        usage.chain(kills).chain(limits).fold(0.0, f64::max)
    }
}

/// One run of the container (a restart starts a new one).
#[derive(Debug, Clone, Default)]
pub(super) struct Attempt {
    /// The container id, when the records had one.
    pub id: Option<String>,
    /// Kubernetes' restart count of this attempt.
    pub restart_count: Option<u32>,
    /// First and last record of the attempt.
    pub start_s: f64,
    pub last_s: f64,
    /// When it ended: the container's exit, else its main process's exit.
    pub end_s: Option<f64>,
    /// The main process (`container_start.pid`).
    pub main_pid: Option<u64>,
    /// The allocation ramp, one series per process, each in time order.
    pub series: Vec<Series>,
    /// The back-off the runtime announced after this attempt.
    pub backoff: Option<Backoff>,
    /// `restart` record that started this attempt: its back-off.
    pub restart_backoff_ms: Option<u64>,
    pub(super) container_exit: Option<ExitMark>,
    pub(super) process_exits: Vec<(u64, ExitMark)>,
}

/// Memory over time: (seconds, MiB). `anon`: one process's anonymous RSS;
/// `file`, `shmem`: what the cgroup gained of that kind.
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub kind: AllocKind,
    /// The process (`anon`); 0 for the cgroup's `file` and `shmem`.
    pub pid: u64,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Backoff {
    pub at_s: f64,
    pub backoff_ms: Option<u64>,
    pub next_restart_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum LimitKind {
    Container,
    Pod,
    Ancestor,
    /// From `alloc.limit_bytes` alone: the container's limit, else the pod's.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LimitLine {
    pub bytes: u64,
    pub kind: LimitKind,
}

impl LimitLine {
    /// `limit 50Mi`, `pod limit 100Mi`.
    pub(super) fn label(&self) -> String {
        let q = crate::quantity::format_bytes(self.bytes);
        match self.kind {
            LimitKind::Container | LimitKind::Unknown => format!("limit {q}"),
            LimitKind::Pod => format!("pod limit {q}"),
            LimitKind::Ancestor => format!("ancestor limit {q}"),
        }
    }
}

/// The OOM killer picked a victim in this container.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Kill {
    pub t: f64,
    /// The memcg's usage at the kill (else the victim's anonymous RSS, else
    /// the last usage seen), MiB.
    pub mib: f64,
    pub pid: Option<u64>,
    pub comm: Option<String>,
    pub kind: OomKind,
    /// Index into [`Lane::attempts`].
    pub attempt: usize,
    /// What filled the memcg that hit its limit, in MiB, largest part
    /// last; empty when the record has no breakdown.
    pub parts: Vec<(Part, f64)>,
    /// `shmem 78%`: the cause and its share of the limit.
    pub cause: Option<String>,
    /// The ramp's largest call sites; `None` when the record has none
    /// (call sites off, or a record from before them).
    pub sites: Option<KillSites>,
}

/// Which code grew the container before a kill (`callsites` of the record).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KillSites {
    /// At most 5, largest first; empty when no growth step was sampled.
    pub top: Vec<KillSite>,
    /// Bytes of all the ramp's sites (the shares' whole).
    pub ramp_bytes: u64,
    /// Sites the cgroup had.
    pub site_count: u64,
}

/// One call site of the ramp.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KillSite {
    /// `stress::grow_fast ← stress::main`: the innermost named frame and
    /// its caller (`?` after a caller that may not be one);
    /// `[no stack: gone]` for a stack without frames.
    pub frames: String,
    /// One or two frames: the callers the kernel could not see are lost.
    pub shallow: bool,
    pub bytes: u64,
    pub share_pct: f64,
}

impl KillSite {
    /// `71%`, `<1%`.
    pub(super) fn share(&self) -> String {
        if self.share_pct > 0.0 && self.share_pct < 0.5 {
            "<1%".to_owned()
        } else {
            format!("{:.0}%", self.share_pct)
        }
    }
}

impl Kill {
    /// `OOM kill stress (pid 31810)`: the marker's text.
    pub(super) fn label(&self) -> String {
        let mut s = String::from("OOM kill");
        if let Some(c) = &self.comm {
            s.push(' ');
            s.push_str(c);
        }
        if let Some(p) = self.pid {
            s.push_str(&format!(" (pid {p})"));
        }
        if self.kind == OomKind::Global {
            s.push_str(", global");
        }
        if let Some(c) = &self.cause {
            s.push_str(" · ");
            s.push_str(c);
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct ExitMark {
    pub t: f64,
    /// 128 + signal for a killed process.
    pub code: Option<i64>,
    /// `137 OOMKilled`, `137 Error (sigkill_other)`, `0 Completed`.
    pub label: String,
}

/// The container was down: from an attempt's exit to the next attempt (or,
/// after the last attempt, to the announced restart time or the end of the
/// records).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Gap {
    pub start_s: f64,
    pub end_s: f64,
    pub backoff_ms: Option<u64>,
    /// No restart followed (the records end during the back-off).
    pub open: bool,
}

impl Gap {
    /// `10s back-off`, `300ms back-off`, or `restart` when no back-off was recorded.
    pub(super) fn label(&self) -> String {
        match self.backoff_ms {
            Some(ms) => format!(
                "{} back-off",
                humantime::format_duration(std::time::Duration::from_millis(ms))
            ),
            None => "restart".to_owned(),
        }
    }
}
