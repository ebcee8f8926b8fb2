//! One NDJSON line → a typed event (`Parsed`), or why it was skipped.
use std::time::UNIX_EPOCH;

use serde_json::Value;

use crate::record::SCHEMA_VERSION;

#[derive(Debug, Clone, Default)]
pub(super) struct PodId {
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) uid: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct CtrId {
    pub(super) name: Option<String>,
    pub(super) id: Option<String>,
    pub(super) restart_count: Option<u32>,
}

#[derive(Debug, Clone)]
pub(super) enum Ev {
    Alloc {
        pid: u64,
        anon_rss: u64,
        limit: Option<u64>,
    },
    OomKill {
        kind: Option<String>,
        pid: Option<u64>,
        comm: Option<String>,
        victim_anon: Option<u64>,
        usage: Option<u64>,
        limit: Option<u64>,
        level: Option<String>,
    },
    Exit {
        pid: u64,
        signal: Option<i64>,
        exit_code: Option<i64>,
        verdict: Option<String>,
    },
    ContainerStart {
        pid: Option<u64>,
        limit: Option<u64>,
        pod_limit: Option<u64>,
    },
    ContainerExit {
        exit_code: Option<i64>,
        reason: Option<String>,
        verdict: Option<String>,
    },
    Backoff {
        backoff_ms: Option<u64>,
        next_restart_us: Option<i64>,
    },
    Restart {
        restart_count: Option<u32>,
        backoff_ms: Option<u64>,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Parsed {
    pub(super) us: i64,
    pub(super) pod: Option<PodId>,
    pub(super) ctr: Option<CtrId>,
    pub(super) cgroup: Option<String>,
    pub(super) ev: Ev,
}

/// Microseconds since the epoch of an RFC 3339 time.
fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn u64_of(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn i64_of(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn pod_of(v: &Value) -> Option<PodId> {
    let p = v.get("pod")?.as_object()?;
    let field = |k: &str| p.get(k).and_then(str_of);
    Some(PodId {
        namespace: field("namespace"),
        name: field("name"),
        uid: field("uid"),
    })
}

fn ctr_of(v: &Value) -> Option<CtrId> {
    let c = v.get("container")?.as_object()?;
    Some(CtrId {
        name: c.get("name").and_then(str_of),
        id: c.get("id").and_then(str_of),
        restart_count: c
            .get("restart_count")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
    })
}

/// What one line is.
pub(super) enum Line {
    Record(Option<Box<Parsed>>),
    Garbage,
    OtherVersion,
}

pub(super) fn parse_line(line: &[u8]) -> Line {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return Line::Garbage;
    };
    let (Some(ver), Some(event), Some(us)) = (
        v.get("v").and_then(Value::as_u64),
        v.get("event").and_then(Value::as_str),
        v.get("time").and_then(Value::as_str).and_then(parse_time),
    ) else {
        return Line::Garbage;
    };
    if ver != u64::from(SCHEMA_VERSION) {
        return Line::OtherVersion;
    }
    let ev = match event {
        "alloc" => {
            let (Some(pid), Some(anon_rss)) = (u64_of(&v["pid"]), u64_of(&v["anon_rss_bytes"]))
            else {
                return Line::Garbage;
            };
            Ev::Alloc {
                pid,
                anon_rss,
                limit: u64_of(&v["limit_bytes"]),
            }
        }
        "oom_kill" => {
            let victim = &v["victim"];
            let memcg = &v["memcg"];
            Ev::OomKill {
                kind: str_of(&v["kind"]),
                pid: u64_of(&victim["pid"]),
                comm: str_of(&victim["comm"]),
                victim_anon: u64_of(&victim["anon_rss_bytes"]),
                usage: u64_of(&memcg["usage_bytes"]),
                limit: u64_of(&memcg["limit_bytes"]),
                level: str_of(&memcg["level"]),
            }
        }
        "exit" => {
            let Some(pid) = u64_of(&v["pid"]) else {
                return Line::Garbage;
            };
            Ev::Exit {
                pid,
                signal: i64_of(&v["signal"]),
                exit_code: i64_of(&v["exit_code"]),
                verdict: str_of(&v["verdict"]),
            }
        }
        "container_start" => Ev::ContainerStart {
            pid: u64_of(&v["pid"]),
            limit: u64_of(&v["memory_limit_bytes"]),
            pod_limit: u64_of(&v["pod_memory_limit_bytes"]),
        },
        "container_exit" => Ev::ContainerExit {
            exit_code: i64_of(&v["exit_code"]),
            reason: str_of(&v["reason"]),
            verdict: str_of(&v["verdict"]),
        },
        "backoff" => Ev::Backoff {
            backoff_ms: u64_of(&v["backoff_ms"]),
            next_restart_us: v["next_restart_at"].as_str().and_then(parse_time),
        },
        "restart" => Ev::Restart {
            restart_count: u64_of(&v["restart_count"]).and_then(|n| u32::try_from(n).ok()),
            backoff_ms: u64_of(&v["backoff_ms"]),
        },
        // Every other event (start, exec, signal, cycle, stop, ... and any
        // added later) only counts as a record.
        _ => return Line::Record(None),
    };
    // The victim's cgroup names an OOM kill's container best.
    let cgroup = ["cgroup", "victim_cgroup"]
        .iter()
        .find_map(|k| str_of(&v[*k]))
        .or_else(|| str_of(&v["memcg"]["path"]));
    Line::Record(Some(Box::new(Parsed {
        us,
        pod: pod_of(&v),
        ctr: ctr_of(&v),
        cgroup,
        ev,
    })))
}
