//! The report's model and picture: on a real run (here), on made-up lanes
//! (`lanes`), and on odd or broken input (`robust`), which never panics.
use serde_json::{Value, json};

mod lanes;
mod robust;
mod sites;

use super::{
    ReportArgs, ReportError, input,
    model::{self, LimitKind},
    svg,
};

/// `oom-tracer run --backoff-initial 300ms --max-restarts 2`: three attempts,
/// three OOM kills at the 50Mi container limit, back-off 300ms then 600ms.
pub(super) const REAL: &str = include_str!("../../../tests/fixtures/run-3-kills.ndjson");

pub(super) const MIB: u64 = 1 << 20;

/// A record at `ms` milliseconds after 2026-11-27T18:00:00Z, with `fields`
/// over defaults for every field the schema requires (tests give only the
/// fields they are about).
pub(super) fn rec(ms: u64, event: &str, fields: Value) -> String {
    let time = format!(
        "2026-11-27T18:{:02}:{:02}.{:06}Z",
        ms / 60_000,
        (ms / 1000) % 60,
        (ms % 1000) * 1000
    );
    let mut v = json!({"v": 1, "time": time, "event": event});
    let obj = v.as_object_mut().unwrap();
    obj.extend(complete(event, fields, &time).as_object().unwrap().clone());
    v.to_string()
}

/// `over` on top of `base`, object by object.
fn merged(base: Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(mut b), Value::Object(o)) => {
            for (k, v) in o {
                let old = b.remove(k).unwrap_or(Value::Null);
                b.insert(k.clone(), merged(old, v));
            }
            Value::Object(b)
        }
        (_, o) => o.clone(),
    }
}

fn task(over: Option<&Value>) -> Value {
    let pid = over.and_then(|o| o.get("pid")).cloned().unwrap_or(json!(0));
    let base = json!({"pid": pid, "tgid": pid, "comm": "app"});
    merged(base, over.unwrap_or(&json!({})))
}

/// `fields`, completed with defaults for the required fields of `event`.
fn complete(event: &str, fields: Value, time: &str) -> Value {
    let f = &fields;
    let ids = json!({"cgroup": null, "pod": null, "container": null});
    let base = match event {
        "alloc" => merged(ids, &json!({"limit_bytes": null})),
        "exit" => merged(
            ids,
            &json!({"signal": null, "exit_code": null, "core_dumped": false, "verdict": null, "killed_by": null}),
        ),
        "oom_kill" => {
            let memcg = f.get("memcg").filter(|m| m.is_object()).map(|m| {
                merged(
                    json!({"id": 0, "path": null, "level": null, "usage_bytes": 0, "limit_bytes": 0, "failcnt": null}),
                    m,
                )
            });
            let victim = merged(
                json!({"anon_rss_bytes": null, "file_rss_bytes": null, "shmem_rss_bytes": null,
                       "total_vm_bytes": null, "oom_score_adj": null, "uid": null}),
                &task(f.get("victim")),
            );
            json!({"kind": "memcg", "victim": victim, "trigger": merged(json!({"cgroup": null}), &task(f.get("trigger"))),
                   "memcg": memcg, "victim_cgroup": null, "source": "tp_btf/mark_victim", "pod": null, "container": null})
        }
        "container_start" => {
            json!({"cgroup": "/x", "pid": 0, "command": [], "memory_limit_bytes": null,
                                    "pod_memory_limit_bytes": null, "discovered": false})
        }
        "container_exit" => {
            json!({"exit_code": 0, "signal": null, "reason": "Error", "verdict": null, "ran_ms": 0})
        }
        "backoff" => json!({"state": "CrashLoopBackOff", "backoff_ms": 0, "next_restart_at": time}),
        "restart" => json!({"restart_count": 0, "backoff_ms": 0, "last_reason": "OOMKilled"}),
        _ => json!({}),
    };
    let mut out = merged(base, f);
    if event == "alloc" || event == "exit" {
        out = merged(task(Some(f)), &out);
    }
    if let Some(m) = out.get_mut("memcg")
        && f.get("memcg").is_none()
    {
        *m = Value::Null;
    }
    out
}

pub(super) fn pod() -> Value {
    json!({"namespace": "shop", "name": "cart-7d9", "uid": "u-1"})
}

pub(super) fn ctr(id: &str, restart: u32) -> Value {
    json!({"name": "app", "id": id, "restart_count": restart})
}

/// One attempt: start, a ramp of `steps` allocs, kill, exits, back-off.
pub(super) fn attempt(lines: &mut Vec<String>, t: &mut u64, n: u32, steps: u64, backoff_ms: u64) {
    let id = format!("c{n}");
    let (p, c) = (pod(), ctr(&id, n));
    let pid = 1000 + u64::from(n);
    if n > 0 {
        lines.push(rec(
            *t,
            "restart",
            json!({"pod": p, "container": c, "restart_count": n, "backoff_ms": backoff_ms, "last_reason": "OOMKilled"}),
        ));
    }
    lines.push(rec(
        *t + 1,
        "container_start",
        json!({"pod": p, "container": c, "cgroup": format!("/k/{id}"), "pid": pid, "command": [],
               "memory_limit_bytes": 64 * MIB, "pod_memory_limit_bytes": 128 * MIB, "discovered": false}),
    ));
    for s in 1..=steps {
        lines.push(rec(
            *t + 1 + s * 10,
            "alloc",
            json!({"pid": pid, "tgid": pid, "comm": "app", "anon_rss_bytes": s * 4 * MIB,
                   "limit_bytes": 64 * MIB, "cgroup": format!("/k/{id}"), "pod": p, "container": c}),
        ));
    }
    *t += 2 + steps * 10;
    lines.push(rec(
        *t,
        "oom_kill",
        json!({"kind": "memcg", "victim": {"pid": pid, "comm": "app", "anon_rss_bytes": 63 * MIB},
               "memcg": {"level": "container", "usage_bytes": 64 * MIB, "limit_bytes": 64 * MIB},
               "pod": p, "container": c}),
    ));
    lines.push(rec(
        *t + 2,
        "exit",
        json!({"pid": pid, "comm": "app", "signal": 9, "exit_code": null, "verdict": "memcg_oom",
               "pod": p, "container": c}),
    ));
    lines.push(rec(
        *t + 3,
        "container_exit",
        json!({"pod": p, "container": c, "exit_code": 137, "signal": 9, "reason": "OOMKilled",
               "verdict": "memcg_oom", "ran_ms": 100}),
    ));
    *t += 3;
}

pub(super) fn render(text: &str) -> (model::Report, String) {
    let report = input::from_str(text);
    let svg = svg::render(&report, "test.ndjson").expect("rendering");
    (report, svg)
}

/// Every `<text>` of a well-formed SVG document.
pub(super) fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
        .collect()
}

#[test]
fn report_model_of_a_real_run() {
    let r = input::from_str(REAL);
    assert_eq!(r.skipped, 0);
    assert_eq!(r.records, 71);
    assert!(r.span_s > 1.0 && r.span_s < 30.0, "{}", r.span_s);
    assert_eq!(r.lanes.len(), 1, "restarts share a lane");
    let lane = &r.lanes[0];
    assert_eq!(lane.key, "default/stress/stress");
    assert_eq!(lane.title, "default/stress · stress");
    assert_eq!(lane.restarts, 2);
    let counts: Vec<_> = lane.attempts.iter().map(|a| a.restart_count).collect();
    assert_eq!(counts, [Some(0), Some(1), Some(2)]);
    for a in &lane.attempts {
        assert!(a.main_pid.is_some());
        assert_eq!(a.series.len(), 1, "one process per attempt");
        let pts = &a.series[0].points;
        assert!(pts.len() >= 3, "ramp: {pts:?}");
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
        assert!(pts.iter().all(|p| p.1 <= 50.0));
        assert!(a.end_s.is_some_and(|e| e > a.start_s));
    }
    assert_eq!(lane.kills.len(), 3);
    for (i, k) in lane.kills.iter().enumerate() {
        assert_eq!(k.attempt, i);
        assert_eq!(k.mib, 50.0, "memcg usage at the kill");
        assert!(
            k.label().starts_with("OOM kill stress (pid "),
            "{}",
            k.label()
        );
    }
    assert_eq!(
        lane.exits.len(),
        3,
        "one exit per attempt, not exit + container_exit"
    );
    assert!(lane.exits.iter().all(|e| e.label == "137 OOMKilled"));
    assert_eq!(lane.limits.len(), 1);
    assert_eq!(lane.limits[0].kind, LimitKind::Container);
    assert_eq!(lane.limits[0].label(), "limit 50Mi");
    let gaps: Vec<_> = lane.gaps.iter().map(|g| g.label()).collect();
    assert_eq!(gaps, ["300ms back-off", "600ms back-off"]);
    for (g, w) in lane.gaps.iter().zip(lane.attempts.windows(2)) {
        assert!(!g.open);
        assert_eq!(Some(g.start_s), w[0].end_s);
        assert_eq!(g.end_s, w[1].start_s);
        let shown = g.end_s - g.start_s;
        let asked = g.backoff_ms.unwrap() as f64 / 1e3;
        assert!(shown >= asked && shown < asked + 0.2, "{shown} vs {asked}");
    }
}

#[test]
fn report_svg_of_a_real_run() {
    let (_, svg) = render(REAL);
    let t = texts(&svg);
    let kills = t.iter().filter(|s| s.starts_with("OOM kill")).count();
    assert_eq!(kills, 3, "{t:?}");
    assert!(t.iter().any(|s| s == "limit 50Mi"), "{t:?}");
    assert_eq!(t.iter().filter(|s| s.ends_with(" back-off")).count(), 2);
    assert_eq!(t.iter().filter(|s| *s == "137 OOMKilled").count(), 3);
    assert!(t.iter().any(|s| s.contains("3 kills, 2 restarts")), "{t:?}");
    assert!(t.iter().any(|s| s == "MiB"));
    assert!(t.iter().any(|s| s == "seconds since first record"));
    for n in ["#0", "#1", "#2"] {
        assert!(t.iter().any(|s| s == n), "{n}");
    }
}

/// `oom-tracer run --memory-limit 50Mi --pod-memory-limit 50Mi
/// --max-restarts 2 --backoff-initial 300ms -- stress --tmpfs-file F`: the
/// tmpfs outlives each restart, so attempts 1 and 2 die at once.
const TMPFS: &str = include_str!("../../../tests/fixtures/run-tmpfs.ndjson");

#[test]
fn report_breakdown_and_shmem_ramp_of_a_real_tmpfs_run() {
    use crate::schema::{AllocKind, Part};
    let (r, svg) = render(TMPFS);
    assert_eq!(r.skipped, 0);
    let lane = &r.lanes[0];
    let first = &lane.attempts[0];
    assert!(
        first
            .series
            .iter()
            .any(|s| s.kind == AllocKind::Shmem && s.points.len() >= 3),
        "the shmem ramp: {:?}",
        first.series
    );
    assert_eq!(lane.kills.len(), 3);
    for k in &lane.kills {
        let (largest, mib) = *k.parts.last().expect("a breakdown");
        assert_eq!(largest, Part::Shmem, "{:?}", k.parts);
        let sum: f64 = k.parts.iter().map(|p| p.1).sum();
        assert!(mib > 45.0 && (sum - k.mib).abs() <= 2.0, "{:?}", k.parts);
        assert!(k.cause.as_deref().is_some_and(|c| c.starts_with("shmem 9")));
    }
    let t = texts(&svg);
    assert!(
        t.iter()
            .any(|s| s.starts_with("OOM kill stress (pid ") && s.contains(" · shmem 9")),
        "{t:?}"
    );
    for key in [
        "tmpfs/shmem grown (dotted)",
        "at the kill: tmpfs/shmem",
        "at the kill: anonymous memory",
    ] {
        assert!(t.iter().any(|s| s == key), "{key}: {t:?}");
    }
    // The bars: one shmem part per kill, in the shmem color.
    assert_eq!(
        svg.matches(r##"fill="#F0961E""##).count(),
        3 + 1,
        "three bars and the key"
    );
}
