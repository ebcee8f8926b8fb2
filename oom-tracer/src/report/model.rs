//! NDJSON records → one timeline per container ("lane").
//!
//! The reader is lenient: lines that are not JSON records with `v`, `event`
//! and `time` are skipped and counted; unknown events and unknown fields are
//! ignored; a known event that lacks a field the picture needs is skipped
//! and counted as malformed. Nothing in the input makes it fail.
use std::{
    collections::{BTreeSet, HashMap},
    io::BufRead,
    time::UNIX_EPOCH,
};

use serde_json::Value;

use crate::record::SCHEMA_VERSION;

/// Limits at or above this are "unlimited" (cgroup v1 reports
/// PAGE_COUNTER_MAX pages as bytes, v2 `max`): no line for them.
const UNLIMITED: u64 = 1 << 60;

const MIB: f64 = (1u64 << 20) as f64;

/// Everything the picture needs, times in seconds since the first record.
#[derive(Debug, Default)]
pub struct Report {
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
pub struct Lane {
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
    pub fn max_mib(&self) -> f64 {
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
pub struct Attempt {
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
    container_exit: Option<ExitMark>,
    process_exits: Vec<(u64, ExitMark)>,
}

/// A process's anonymous RSS over time: (seconds, MiB).
#[derive(Debug, Clone)]
pub struct Series {
    pub pid: u64,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub at_s: f64,
    pub backoff_ms: Option<u64>,
    pub next_restart_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitKind {
    Container,
    Pod,
    Ancestor,
    /// From `alloc.limit_bytes` alone: the container's limit, else the pod's.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitLine {
    pub bytes: u64,
    pub kind: LimitKind,
}

impl LimitLine {
    /// `limit 50Mi`, `pod limit 100Mi`.
    pub fn label(&self) -> String {
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
pub struct Kill {
    pub t: f64,
    /// The memcg's usage at the kill (else the victim's anonymous RSS, else
    /// the last usage seen), MiB.
    pub mib: f64,
    pub pid: Option<u64>,
    pub comm: Option<String>,
    /// `memcg` or `global`.
    pub kind: Option<String>,
    /// Index into [`Lane::attempts`].
    pub attempt: usize,
}

impl Kill {
    /// `OOM kill stress (pid 31810)`: the marker's text.
    pub fn label(&self) -> String {
        let mut s = String::from("OOM kill");
        if let Some(c) = &self.comm {
            s.push(' ');
            s.push_str(c);
        }
        if let Some(p) = self.pid {
            s.push_str(&format!(" (pid {p})"));
        }
        if self.kind.as_deref() == Some("global") {
            s.push_str(", global");
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExitMark {
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
pub struct Gap {
    pub start_s: f64,
    pub end_s: f64,
    pub backoff_ms: Option<u64>,
    /// No restart followed (the records end during the back-off).
    pub open: bool,
}

impl Gap {
    /// `10s back-off`, `300ms back-off`, or `restart` when no back-off was recorded.
    pub fn label(&self) -> String {
        match self.backoff_ms {
            Some(ms) => format!(
                "{} back-off",
                humantime::format_duration(std::time::Duration::from_millis(ms))
            ),
            None => "restart".to_owned(),
        }
    }
}

// ---------------------------------------------------------------- parsing

#[derive(Debug, Clone, Default)]
struct PodId {
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct CtrId {
    name: Option<String>,
    id: Option<String>,
    restart_count: Option<u32>,
}

#[derive(Debug, Clone)]
enum Ev {
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
struct Parsed {
    us: i64,
    pod: Option<PodId>,
    ctr: Option<CtrId>,
    cgroup: Option<String>,
    ev: Ev,
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
enum Line {
    Record(Option<Box<Parsed>>),
    Garbage,
    OtherVersion,
}

fn parse_line(line: &[u8]) -> Line {
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

/// Reads NDJSON records and builds the lanes. Only I/O errors fail.
pub fn read(input: impl BufRead) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut parsed = Vec::new();
    let (mut first_us, mut last_us) = (None::<i64>, None::<i64>);
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(&line) {
            Line::Garbage => report.skipped += 1,
            Line::OtherVersion => report.other_version += 1,
            Line::Record(p) => {
                report.records += 1;
                if let Some(p) = p {
                    first_us = Some(first_us.map_or(p.us, |f| f.min(p.us)));
                    last_us = Some(last_us.map_or(p.us, |l| l.max(p.us)));
                    parsed.push(*p);
                }
            }
        }
    }
    // Unknown events count as records but carry no time we keep: the
    // timeline starts at the first record the picture uses.
    let t0 = first_us.unwrap_or(0);
    report.span_s = last_us.map_or(0.0, |l| secs(l - t0));
    report.lanes = build(&parsed, t0);
    Ok(report)
}

/// Builds the model from text (tests).
#[cfg(test)]
pub fn from_str(s: &str) -> Report {
    read(s.as_bytes()).expect("reading from memory")
}

fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// Which attempt of a lane a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AttemptKey {
    Id(String),
    Count(u32),
    Single,
}

struct LaneBuilder {
    lane: Lane,
    attempt_index: HashMap<AttemptKey, usize>,
    explicit_limits: BTreeSet<(LimitKind, u64)>,
    alloc_limits: BTreeSet<u64>,
    restart_records: usize,
}

impl LaneBuilder {
    fn attempt(&mut self, key: AttemptKey, t: f64, restart_count: Option<u32>) -> usize {
        let attempts = &mut self.lane.attempts;
        let i = *self.attempt_index.entry(key.clone()).or_insert_with(|| {
            attempts.push(Attempt {
                id: match &key {
                    AttemptKey::Id(id) => Some(id.clone()),
                    _ => None,
                },
                start_s: t,
                last_s: t,
                ..Attempt::default()
            });
            attempts.len() - 1
        });
        let a = &mut attempts[i];
        a.start_s = a.start_s.min(t);
        a.last_s = a.last_s.max(t);
        if a.restart_count.is_none() {
            a.restart_count = restart_count;
        }
        i
    }
}

/// Lane key and title of a record. Container names and pod names are taken
/// from any record of the same container id / pod uid, so a record written
/// before the metadata was known still lands in the right lane.
fn lane_id(
    p: &Parsed,
    pods: &HashMap<String, PodId>,
    names: &HashMap<String, String>,
) -> Option<(String, String)> {
    if p.pod.is_none() && p.ctr.is_none() {
        let cg = p.cgroup.as_ref()?;
        return Some((format!("cgroup:{cg}"), cg.clone()));
    }
    let pod = p.pod.clone().unwrap_or_default();
    let known = pod.uid.as_ref().and_then(|u| pods.get(u));
    let ns = pod
        .namespace
        .clone()
        .or_else(|| known.and_then(|k| k.namespace.clone()));
    let name = pod
        .name
        .clone()
        .or_else(|| known.and_then(|k| k.name.clone()));
    let pod_part = match (ns, name, &pod.uid) {
        (Some(ns), Some(n), _) => format!("{ns}/{n}"),
        (None, Some(n), _) => format!("?/{n}"),
        (_, None, Some(uid)) => format!("pod {uid}"),
        (_, None, None) => "?".to_owned(),
    };
    let ctr = p.ctr.clone().unwrap_or_default();
    let ctr_part = ctr
        .name
        .clone()
        .or_else(|| ctr.id.as_ref().and_then(|id| names.get(id).cloned()))
        .or_else(|| ctr.id.as_ref().map(|id| id.chars().take(12).collect()))
        .unwrap_or_else(|| "?".to_owned());
    Some((
        format!("{pod_part}/{ctr_part}"),
        format!("{pod_part} · {ctr_part}"),
    ))
}

fn build(parsed: &[Parsed], t0: i64) -> Vec<Lane> {
    // Names learnt anywhere in the file.
    let mut pods: HashMap<String, PodId> = HashMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for p in parsed {
        if let Some(pod) = &p.pod
            && let Some(uid) = &pod.uid
        {
            let e = pods.entry(uid.clone()).or_default();
            if e.namespace.is_none() {
                e.namespace.clone_from(&pod.namespace);
            }
            if e.name.is_none() {
                e.name.clone_from(&pod.name);
            }
        }
        if let Some(CtrId {
            name: Some(n),
            id: Some(id),
            ..
        }) = &p.ctr
        {
            names.entry(id.clone()).or_insert_with(|| n.clone());
        }
    }

    let mut lanes: Vec<LaneBuilder> = Vec::new();
    let mut lane_index: HashMap<String, usize> = HashMap::new();
    for p in parsed {
        let Some((key, title)) = lane_id(p, &pods, &names) else {
            continue;
        };
        let t = secs(p.us - t0);
        let li = *lane_index.entry(key.clone()).or_insert_with(|| {
            lanes.push(LaneBuilder {
                lane: Lane {
                    key,
                    title,
                    attempts: Vec::new(),
                    limits: Vec::new(),
                    kills: Vec::new(),
                    exits: Vec::new(),
                    gaps: Vec::new(),
                    restarts: 0,
                    first_s: t,
                },
                attempt_index: HashMap::new(),
                explicit_limits: BTreeSet::new(),
                alloc_limits: BTreeSet::new(),
                restart_records: 0,
            });
            lanes.len() - 1
        });
        let lb = &mut lanes[li];
        lb.lane.first_s = lb.lane.first_s.min(t);
        let ctr = p.ctr.clone().unwrap_or_default();
        let akey = match (&ctr.id, ctr.restart_count) {
            (Some(id), _) => AttemptKey::Id(id.clone()),
            (None, Some(n)) => AttemptKey::Count(n),
            (None, None) => AttemptKey::Single,
        };
        let ai = lb.attempt(akey, t, ctr.restart_count);
        match &p.ev {
            Ev::Alloc {
                pid,
                anon_rss,
                limit,
            } => {
                let a = &mut lb.lane.attempts[ai];
                let point = (t, *anon_rss as f64 / MIB);
                match a.series.iter_mut().find(|s| s.pid == *pid) {
                    Some(s) => s.points.push(point),
                    None => a.series.push(Series {
                        pid: *pid,
                        points: vec![point],
                    }),
                }
                if let Some(l) = limit {
                    lb.alloc_limits.insert(*l);
                }
            }
            Ev::OomKill {
                kind,
                pid,
                comm,
                victim_anon,
                usage,
                limit,
                level,
            } => {
                // The memcg's usage, else the victim's RSS, else the last
                // usage seen in the attempt, else the limit.
                let last_seen = lb.lane.attempts[ai]
                    .series
                    .iter()
                    .filter_map(|s| {
                        s.points
                            .iter()
                            .filter(|p| p.0 <= t)
                            .max_by(|a, b| a.0.total_cmp(&b.0))
                    })
                    .map(|p| p.1)
                    .reduce(f64::max);
                let mib = usage
                    .or(*victim_anon)
                    .map(|b| b as f64 / MIB)
                    .or(last_seen)
                    .or(limit.map(|b| b as f64 / MIB))
                    .unwrap_or(0.0);
                lb.lane.kills.push(Kill {
                    t,
                    mib,
                    pid: *pid,
                    comm: comm.clone(),
                    kind: kind.clone(),
                    attempt: ai,
                });
                if let Some(l) = limit {
                    let k = match level.as_deref() {
                        Some("container") => LimitKind::Container,
                        Some("pod") => LimitKind::Pod,
                        Some("ancestor") => LimitKind::Ancestor,
                        _ => LimitKind::Unknown,
                    };
                    lb.explicit_limits.insert((k, *l));
                }
            }
            Ev::Exit {
                pid,
                signal,
                exit_code,
                verdict,
            } => {
                let code = exit_code.or(signal.map(|s| 128 + s));
                let mut label = code.map_or_else(|| "exit".to_owned(), |c| c.to_string());
                if let Some(s) = signal {
                    label.push_str(&format!(" signal {s}"));
                }
                push_verdict(&mut label, verdict.as_deref());
                lb.lane.attempts[ai]
                    .process_exits
                    .push((*pid, ExitMark { t, code, label }));
            }
            Ev::ContainerStart {
                pid,
                limit,
                pod_limit,
            } => {
                let a = &mut lb.lane.attempts[ai];
                if a.main_pid.is_none() {
                    a.main_pid = *pid;
                }
                if let Some(l) = limit {
                    lb.explicit_limits.insert((LimitKind::Container, *l));
                }
                if let Some(l) = pod_limit {
                    lb.explicit_limits.insert((LimitKind::Pod, *l));
                }
            }
            Ev::ContainerExit {
                exit_code,
                reason,
                verdict,
            } => {
                let mut label = exit_code.map_or_else(|| "exit".to_owned(), |c| c.to_string());
                if let Some(r) = reason {
                    label.push(' ');
                    label.push_str(r);
                }
                push_verdict(&mut label, verdict.as_deref());
                lb.lane.attempts[ai].container_exit = Some(ExitMark {
                    t,
                    code: *exit_code,
                    label,
                });
            }
            Ev::Backoff {
                backoff_ms,
                next_restart_us,
            } => {
                lb.lane.attempts[ai].backoff = Some(Backoff {
                    at_s: t,
                    backoff_ms: *backoff_ms,
                    next_restart_s: next_restart_us.map(|u| secs(u - t0)),
                });
            }
            Ev::Restart {
                restart_count,
                backoff_ms,
            } => {
                lb.restart_records += 1;
                let a = &mut lb.lane.attempts[ai];
                a.restart_backoff_ms = *backoff_ms;
                if a.restart_count.is_none() {
                    a.restart_count = *restart_count;
                }
            }
        }
    }
    let end = parsed.iter().map(|p| secs(p.us - t0)).fold(0.0, f64::max);
    lanes.into_iter().map(|lb| finish(lb, end)).collect()
}

/// `(sigkill_other)` after an exit's code: why a SIGKILL/137 happened, when
/// it was not the container's own OOM kill.
fn push_verdict(label: &mut String, verdict: Option<&str>) {
    if let Some(v) = verdict
        && v != "memcg_oom"
    {
        label.push_str(&format!(" ({v})"));
    }
}

fn finish(lb: LaneBuilder, end_s: f64) -> Lane {
    let LaneBuilder {
        mut lane,
        explicit_limits,
        alloc_limits,
        restart_records,
        ..
    } = lb;

    // Attempts in time order; kills follow their attempt's new index.
    let mut order: Vec<usize> = (0..lane.attempts.len()).collect();
    order.sort_by(|&a, &b| {
        lane.attempts[a]
            .start_s
            .total_cmp(&lane.attempts[b].start_s)
    });
    let mut new_index = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut old: Vec<Option<Attempt>> = lane.attempts.drain(..).map(Some).collect();
    lane.attempts = order.iter().map(|&i| old[i].take().unwrap()).collect();
    for k in &mut lane.kills {
        k.attempt = new_index[k.attempt];
    }
    lane.kills.sort_by(|a, b| a.t.total_cmp(&b.t));

    for a in &mut lane.attempts {
        for s in &mut a.series {
            s.points.sort_by(|x, y| x.0.total_cmp(&y.0));
        }
        a.series.sort_by(|x, y| {
            let first = |s: &Series| s.points.first().map_or(0.0, |p| p.0);
            first(x).total_cmp(&first(y))
        });
        // The container's exit, else its main process's, else (no main
        // process known) every exit the kernel explained.
        let marks: Vec<ExitMark> = if let Some(e) = a.container_exit.take() {
            vec![e]
        } else if let Some(main) = a.main_pid {
            a.process_exits
                .iter()
                .filter(|(pid, _)| *pid == main)
                .map(|(_, m)| m.clone())
                .take(1)
                .collect()
        } else {
            a.process_exits
                .iter()
                .filter(|(_, m)| m.code == Some(137))
                .map(|(_, m)| m.clone())
                .collect()
        };
        a.end_s = marks.iter().map(|m| m.t).reduce(f64::max);
        a.process_exits.clear();
        lane.exits.extend(marks);
    }
    lane.exits.sort_by(|a, b| a.t.total_cmp(&b.t));

    // Down time between attempts.
    for i in 0..lane.attempts.len() {
        let a = &lane.attempts[i];
        let Some(exit) = a.end_s else { continue };
        let announced = a.backoff.and_then(|b| b.backoff_ms);
        match lane.attempts.get(i + 1) {
            Some(next) if next.start_s > exit => lane.gaps.push(Gap {
                start_s: exit,
                end_s: next.start_s,
                backoff_ms: announced.or(next.restart_backoff_ms),
                open: false,
            }),
            Some(_) => {}
            None => {
                if let Some(b) = a.backoff {
                    let planned = b
                        .next_restart_s
                        .or_else(|| b.backoff_ms.map(|ms| b.at_s + ms as f64 / 1e3));
                    let until = planned.unwrap_or(end_s).min(end_s);
                    if until > exit {
                        lane.gaps.push(Gap {
                            start_s: exit,
                            end_s: until,
                            backoff_ms: announced,
                            open: true,
                        });
                    }
                }
            }
        }
    }

    // Limit lines: what the records name, then alloc limits that match none.
    let mut limits: Vec<LimitLine> = explicit_limits
        .iter()
        .filter(|(_, b)| *b > 0 && *b < UNLIMITED)
        .map(|&(kind, bytes)| LimitLine { bytes, kind })
        .collect();
    for &b in &alloc_limits {
        if b > 0 && b < UNLIMITED && !limits.iter().any(|l| l.bytes == b) {
            limits.push(LimitLine {
                bytes: b,
                kind: LimitKind::Unknown,
            });
        }
    }
    limits.sort_by_key(|l| (l.kind, l.bytes));
    lane.limits = limits;

    lane.restarts = if restart_records > 0 {
        restart_records
    } else {
        lane.attempts.len().saturating_sub(1)
    };
    lane
}
