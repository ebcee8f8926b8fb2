//! The tracer's own records: how it started and why it stopped.
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `oom-tracer run` or `oom-tracer agent`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    Run,
    Agent,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Agent => "agent",
        }
    }
}

/// The memory controller's cgroup version.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// The tracer's hooks, as attached at startup.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HookStatus {
    pub active: Vec<String>,
    pub missing: Vec<MissingHook>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MissingHook {
    pub hook: String,
    pub reason: String,
}

/// Kernel run time of one program over the tracer's life (bpf_stats).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HookStat {
    pub program: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Why the tracer stopped. Written as `max_restarts`, `restart_policy`,
/// `signal SIGTERM`, or `error: <what went wrong>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// `run`: `--max-restarts` reached.
    MaxRestarts,
    /// `run`: the restart policy said no more.
    RestartPolicy,
    /// A signal asked it to stop.
    Signal(String),
    /// It failed.
    Error(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MaxRestarts => f.write_str("max_restarts"),
            Self::RestartPolicy => f.write_str("restart_policy"),
            Self::Signal(s) => write!(f, "signal {s}"),
            Self::Error(e) => write!(f, "error: {e}"),
        }
    }
}

impl std::str::FromStr for StopReason {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "max_restarts" => Self::MaxRestarts,
            "restart_policy" => Self::RestartPolicy,
            _ => match (s.strip_prefix("signal "), s.strip_prefix("error: ")) {
                (Some(sig), _) => Self::Signal(sig.to_owned()),
                (_, Some(e)) => Self::Error(e.to_owned()),
                _ => Self::Error(s.to_owned()),
            },
        })
    }
}

impl Serialize for StopReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(s.parse().unwrap_or_else(|e| match e {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_read_back() {
        for r in [
            StopReason::MaxRestarts,
            StopReason::RestartPolicy,
            StopReason::Signal("SIGTERM".into()),
            StopReason::Error("no OOM source".into()),
        ] {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<StopReason>(&s).unwrap(), r, "{s}");
        }
        assert_eq!(
            StopReason::Signal("SIGINT".into()).to_string(),
            "signal SIGINT"
        );
    }
}
