//! One NDJSON line → a record, read with the schema's own types, or why
//! it was skipped.
use serde_json::Value;

use crate::schema::{Body, ContainerRef, PodRef, Record, SCHEMA_VERSION, Timestamp};

/// What one line is.
pub(super) enum Line {
    /// A record; `None` for an event the picture does not draw (counted).
    Record(Option<Box<Record>>),
    /// Not a record of the schema: not JSON, no `v`/`event`/`time`, or a
    /// known event that lacks a field or has one of the wrong type.
    Garbage,
    OtherVersion,
}

pub(super) fn parse_line(line: &[u8]) -> Line {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return Line::Garbage;
    };
    let (Some(version), Some(event), Some(_)) = (
        v.get("v").and_then(Value::as_u64),
        v.get("event").and_then(Value::as_str),
        v.get("time")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok()),
    ) else {
        return Line::Garbage;
    };
    if version != u64::from(SCHEMA_VERSION) {
        return Line::OtherVersion;
    }
    // Events the picture does not draw only count (read leniently: their
    // fields do not matter here).
    if !DRAWN.contains(&event) {
        return Line::Record(None);
    }
    match serde_json::from_value::<Record>(v) {
        Ok(r) => Line::Record(Some(Box::new(r))),
        Err(_) => Line::Garbage,
    }
}

/// The pod, container and cgroup a record is about, for the lane it goes in.
pub(super) fn whose(b: &Body) -> (Option<&PodRef>, Option<&ContainerRef>, Option<&str>) {
    match b {
        Body::Alloc(a) => (a.pod.as_ref(), a.container.as_ref(), a.cgroup.as_deref()),
        Body::Exit(e) => (e.pod.as_ref(), e.container.as_ref(), e.cgroup.as_deref()),
        Body::OomKill(o) => {
            // The victim's cgroup names an OOM kill's container best.
            let cgroup = o
                .victim_cgroup
                .as_deref()
                .or_else(|| o.memcg.as_ref().and_then(|m| m.path.as_deref()));
            (o.pod.as_ref(), o.container.as_ref(), cgroup)
        }
        Body::ContainerStart(s) => (Some(&s.pod), Some(&s.container), Some(&s.cgroup)),
        Body::ContainerExit(e) => (Some(&e.pod), Some(&e.container), None),
        Body::Backoff(b) => (Some(&b.pod), Some(&b.container), None),
        Body::Restart(r) => (Some(&r.pod), Some(&r.container), None),
        _ => (None, None, None),
    }
}

/// The events the picture draws.
const DRAWN: [&str; 7] = [
    "alloc",
    "exit",
    "oom_kill",
    "container_start",
    "container_exit",
    "backoff",
    "restart",
];
