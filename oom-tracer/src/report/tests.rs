//! The model on a real run and on made-up records; rendering never panics.
use serde_json::{Value, json};

use super::{
    ReportArgs, ReportError,
    model::{self, LimitKind},
    svg,
};

/// `oom-tracer run --backoff-initial 300ms --max-restarts 2`: three attempts,
/// three OOM kills at the 50Mi container limit, back-off 300ms then 600ms.
const REAL: &str = include_str!("../../tests/fixtures/run-3-kills.ndjson");

const MIB: u64 = 1 << 20;

/// A record at `ms` milliseconds after 2026-11-27T18:00:00Z.
fn rec(ms: u64, event: &str, fields: Value) -> String {
    let mut v = json!({
        "v": 1,
        "time": format!(
            "2026-11-27T18:{:02}:{:02}.{:06}Z",
            ms / 60_000,
            (ms / 1000) % 60,
            (ms % 1000) * 1000
        ),
        "event": event,
    });
    v.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    v.to_string()
}

fn pod() -> Value {
    json!({"namespace": "shop", "name": "cart-7d9", "uid": "u-1"})
}

fn ctr(id: &str, restart: u32) -> Value {
    json!({"name": "app", "id": id, "restart_count": restart})
}

/// One attempt: start, a ramp of `steps` allocs, kill, exits, back-off.
fn attempt(lines: &mut Vec<String>, t: &mut u64, n: u32, steps: u64, backoff_ms: u64) {
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

fn render(text: &str) -> (model::Report, String) {
    let report = model::from_str(text);
    let svg = svg::render(&report, "test.ndjson").expect("rendering");
    (report, svg)
}

/// Every `<text>` of a well-formed SVG document.
fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
        .collect()
}

#[test]
fn report_model_of_a_real_run() {
    let r = model::from_str(REAL);
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

#[test]
fn report_lanes_attempts_gaps_and_limits() {
    let mut lines = Vec::new();
    let mut t = 0;
    for n in 0..3 {
        attempt(
            &mut lines,
            &mut t,
            n,
            5,
            if n == 0 { 0 } else { 1000 << (n - 1) },
        );
        lines.push(rec(
            t + 1,
            "backoff",
            json!({"pod": pod(), "container": ctr(&format!("c{n}"), n), "state": "CrashLoopBackOff",
                   "backoff_ms": 1000 << n, "next_restart_at": "2099-01-01T00:00:00.000000Z"}),
        ));
        t += 1000 << n;
    }
    // A second container of the same pod, no kills, and records nobody knows yet.
    lines.push(rec(
        t,
        "alloc",
        json!({"pid": 5, "tgid": 5, "comm": "side", "anon_rss_bytes": 4 * MIB, "limit_bytes": null,
               "pod": pod(), "container": {"name": "sidecar", "id": "s0", "restart_count": 0},
               "brand_new_field": [1, 2]}),
    ));
    lines.push(rec(
        t,
        "cycle",
        json!({"pod": pod(), "anything": {"goes": true}}),
    ));
    lines.push(rec(
        t,
        "future_event",
        json!({"pod": pod(), "container": ctr("c9", 9)}),
    ));
    let (r, svg) = render(&lines.join("\n"));
    assert_eq!(r.skipped, 0);
    assert_eq!(r.lanes.len(), 2);
    let lane = &r.lanes[0];
    assert_eq!(lane.key, "shop/cart-7d9/app");
    assert_eq!(lane.attempts.len(), 3);
    assert_eq!(lane.restarts, 2);
    assert_eq!(lane.kills.len(), 3);
    assert_eq!(
        lane.limits.iter().map(|l| l.label()).collect::<Vec<_>>(),
        ["limit 64Mi", "pod limit 128Mi"]
    );
    // The back-off announced after the attempt names the gap; the last one
    // is still open when the records end, and stops there.
    let gaps: Vec<_> = lane.gaps.iter().map(|g| (g.label(), g.open)).collect();
    assert_eq!(
        gaps,
        [
            ("1s back-off".to_owned(), false),
            ("2s back-off".to_owned(), false),
            ("4s back-off".to_owned(), true)
        ]
    );
    assert!(lane.gaps[2].end_s <= r.span_s);
    let side = &r.lanes[1];
    assert_eq!(side.key, "shop/cart-7d9/sidecar");
    assert!(side.kills.is_empty() && side.limits.is_empty() && side.gaps.is_empty());
    assert_eq!(side.restarts, 0);
    let t = texts(&svg);
    assert_eq!(t.iter().filter(|s| s.starts_with("OOM kill")).count(), 3);
    assert!(t.iter().any(|s| s == "pod limit 128Mi"));
    assert!(t.iter().any(|s| s.contains("0 kills, 0 restarts")));
}

#[test]
fn report_lane_keys_without_kubernetes_identity() {
    let lines = [
        // No pod or container: the cgroup is the lane.
        rec(
            0,
            "alloc",
            json!({"pid": 1, "anon_rss_bytes": 4 * MIB, "limit_bytes": 32 * MIB, "cgroup": "/system.slice/x",
                   "pod": null, "container": null}),
        ),
        rec(
            5,
            "oom_kill",
            json!({"kind": "memcg", "victim": {"pid": 1, "comm": "x"}, "memcg": null,
                   "victim_cgroup": "/system.slice/x", "pod": null, "container": null}),
        ),
        rec(
            6,
            "exit",
            json!({"pid": 1, "signal": 9, "exit_code": null, "verdict": "sigkill_other",
                   "cgroup": "/system.slice/x", "pod": null, "container": null}),
        ),
        // The container's name is not known yet, then it is: one lane.
        rec(
            10,
            "container_start",
            json!({"pod": {"namespace": null, "name": null, "uid": "u-2"},
                   "container": {"name": null, "id": "abc", "restart_count": null}, "pid": 7}),
        ),
        rec(
            20,
            "alloc",
            json!({"pid": 7, "anon_rss_bytes": 8 * MIB, "limit_bytes": null,
                   "pod": {"namespace": "ns", "name": "web", "uid": "u-2"},
                   "container": {"name": "nginx", "id": "abc", "restart_count": 0}}),
        ),
        // Nothing to place it by: ignored.
        rec(30, "alloc", json!({"pid": 8, "anon_rss_bytes": MIB})),
    ];
    let (r, svg) = render(&lines.join("\n"));
    assert_eq!(r.lanes.len(), 2, "{:?}", r.lanes);
    let cg = &r.lanes[0];
    assert_eq!(cg.key, "cgroup:/system.slice/x");
    assert_eq!(cg.kills.len(), 1);
    assert_eq!(cg.kills[0].mib, 4.0, "no memcg: the last known usage");
    assert_eq!(cg.limits[0].label(), "limit 32Mi");
    assert_eq!(
        cg.exits.len(),
        1,
        "a 137 is shown without a known main process"
    );
    assert_eq!(cg.exits[0].label, "137 signal 9 (sigkill_other)");
    let web = &r.lanes[1];
    assert_eq!(web.key, "ns/web/nginx");
    assert_eq!(web.attempts.len(), 1);
    assert_eq!(web.attempts[0].restart_count, Some(0));
    texts(&svg);
}

#[test]
fn report_exit_of_the_main_process_without_container_exit() {
    let p = pod();
    let c = ctr("c0", 0);
    let lines = [
        rec(
            0,
            "container_start",
            json!({"pod": p, "container": c, "pid": 10, "memory_limit_bytes": null}),
        ),
        rec(
            5,
            "exit",
            json!({"pid": 11, "signal": null, "exit_code": 0, "pod": p, "container": c}),
        ),
        rec(
            9,
            "exit",
            json!({"pid": 10, "signal": null, "exit_code": 1, "pod": p, "container": c}),
        ),
    ];
    let r = model::from_str(&lines.join("\n"));
    let lane = &r.lanes[0];
    assert_eq!(lane.exits.len(), 1);
    assert_eq!(lane.exits[0].label, "1");
    assert_eq!(lane.exits[0].code, Some(1));
    assert!(lane.limits.is_empty());
}

#[test]
fn report_garbage_and_empty_input_do_not_panic() {
    let good = rec(
        0,
        "alloc",
        json!({"pid": 1, "anon_rss_bytes": 4 * MIB, "cgroup": "/a"}),
    );
    let mut input = Vec::new();
    for l in [
        "not json",
        "{}",
        "[1, 2]",
        "null",
        r#"{"v": 1, "event": "alloc"}"#,
        r#"{"v": 1, "event": "alloc", "time": "yesterday"}"#,
        r#"{"v": 1, "event": "alloc", "time": "2026-11-27T18:00:00.000000Z"}"#,
        r#"{"v": 1, "event": "exit", "time": "2026-11-27T18:00:00.000000Z", "pid": "one"}"#,
        r#"{"v": 1, "time": "2026-11-27T18:00:00.000000Z", "event": "alloc", "pid": 1, "anon_rss_bytes": -5}"#,
        "{\"v\": 1, \"event\": \"sto",
        "",
        "   ",
        &good,
    ] {
        input.extend_from_slice(l.as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(b"\xff\xfe\n");
    input.extend_from_slice(br#"{"v": 2, "event": "alloc", "time": "2026-11-27T18:00:00Z"}"#);
    let r = model::read(&input[..]).unwrap();
    assert_eq!(r.skipped, 11, "blank lines are not counted");
    assert_eq!(r.other_version, 1);
    assert_eq!(r.records, 1);
    assert_eq!(r.lanes.len(), 1);
    let t = texts(&svg::render(&r, "garbage.ndjson").unwrap());
    assert!(
        t.iter().any(|s| s.contains("11 malformed lines skipped")),
        "{t:?}"
    );

    for empty in ["", "\n\n", "garbage only", &rec(0, "start", json!({}))] {
        let (r, svg) = render(empty);
        assert!(r.lanes.is_empty());
        assert!(
            texts(&svg)
                .iter()
                .any(|s| s == "no container records to draw")
        );
    }
}

#[test]
fn report_odd_shapes_render() {
    // A single point.
    let (r, svg) = render(&rec(
        0,
        "alloc",
        json!({"pid": 1, "anon_rss_bytes": 0, "cgroup": "/one"}),
    ));
    assert_eq!(r.span_s, 0.0);
    texts(&svg);

    // No alloc records: the kill, the limit and the exit still show.
    let p = pod();
    let c = ctr("c0", 0);
    let lines = [
        rec(
            0,
            "container_start",
            json!({"pod": p, "container": c, "pid": 3, "memory_limit_bytes": 50 * MIB}),
        ),
        rec(
            100,
            "oom_kill",
            json!({"kind": "memcg", "victim": {"pid": 3, "comm": "x"},
                   "memcg": {"level": "container", "usage_bytes": 50 * MIB, "limit_bytes": 50 * MIB},
                   "pod": p, "container": c}),
        ),
        rec(
            101,
            "container_exit",
            json!({"pod": p, "container": c, "exit_code": 137, "reason": "OOMKilled"}),
        ),
    ];
    let (_, svg) = render(&lines.join("\n"));
    let t = texts(&svg);
    assert!(t.iter().any(|s| s == "OOM kill x (pid 3)"), "{t:?}");
    assert!(t.iter().any(|s| s == "limit 50Mi"));
    assert!(t.iter().any(|s| s == "137 OOMKilled"));

    // Unlimited limits draw no line; huge or odd names stay valid XML.
    let weird = "a<b>&\"c\u{1}\u{7f}".repeat(40);
    let lines = [rec(
        0,
        "oom_kill",
        json!({"kind": "global", "victim": {"pid": 3, "comm": weird, "anon_rss_bytes": u64::MAX},
               "memcg": {"level": "ancestor", "usage_bytes": u64::MAX, "limit_bytes": u64::MAX},
               "pod": {"namespace": weird, "name": weird, "uid": "u"}, "container": {"name": weird, "id": "i"}}),
    )];
    let (r, svg) = render(&lines.join("\n"));
    assert!(r.lanes[0].limits.is_empty());
    texts(&svg);
}

#[test]
fn report_fifty_attempts_in_one_lane() {
    let mut lines = Vec::new();
    let mut t = 0;
    for n in 0..50 {
        attempt(&mut lines, &mut t, n, 3, 10);
        t += 10;
    }
    let (r, svg) = render(&lines.join("\n"));
    let lane = &r.lanes[0];
    assert_eq!(lane.attempts.len(), 50);
    assert_eq!(lane.kills.len(), 50);
    assert_eq!(lane.restarts, 49);
    assert_eq!(lane.gaps.len(), 49);
    assert!(lane.gaps.iter().all(|g| g.label() == "10ms back-off"));
    let t = texts(&svg);
    assert_eq!(t.iter().filter(|s| s.starts_with("OOM kill")).count(), 50);
    assert!(t.iter().any(|s| s == "… 45 more attempts"));
    assert!(t.iter().any(|s| s == "anon RSS, #0 (c0)"), "{t:?}");
}

#[test]
fn report_many_lanes_are_capped() {
    let lines: Vec<String> = (0..svg::MAX_LANES + 5)
        .map(|i| {
            rec(
                i as u64,
                "alloc",
                json!({"pid": 1, "anon_rss_bytes": MIB, "cgroup": format!("/c{i}")}),
            )
        })
        .collect();
    let (r, svg) = render(&lines.join("\n"));
    assert_eq!(r.lanes.len(), svg::MAX_LANES + 5);
    assert!(texts(&svg).iter().any(|s| s.contains("(5 left out)")));
}

#[test]
fn report_run_errors_name_the_path() {
    let dir = std::env::temp_dir().join(format!("oom-tracer-report-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.ndjson");
    let e = super::run(&ReportArgs {
        input: missing.clone(),
        svg: dir.join("out.svg"),
    })
    .unwrap_err();
    assert!(matches!(e, ReportError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.ndjson"), "{e}");
    assert!(std::error::Error::source(&e).is_some());

    let input = dir.join("in.ndjson");
    std::fs::write(&input, REAL).unwrap();
    let out = dir.join("no-such-dir").join("out.svg");
    let e = super::run(&ReportArgs {
        input: input.clone(),
        svg: out.clone(),
    })
    .unwrap_err();
    assert!(matches!(e, ReportError::Write { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-dir"), "{e}");

    let out = dir.join("out.svg");
    super::run(&ReportArgs {
        input,
        svg: out.clone(),
    })
    .unwrap();
    texts(&std::fs::read_to_string(&out).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
