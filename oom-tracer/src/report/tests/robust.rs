//! Garbage, odd shapes, many attempts and lanes, and I/O errors: never a panic.
use serde_json::json;

use super::*;

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
    let r = input::read(&input[..]).unwrap();
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
    let e = crate::report::run(&ReportArgs {
        input: missing.clone(),
        svg: Some(dir.join("out.svg")),
        folded: None,
    })
    .unwrap_err();
    assert!(matches!(e, ReportError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.ndjson"), "{e}");
    assert!(std::error::Error::source(&e).is_some());

    let input = dir.join("in.ndjson");
    std::fs::write(&input, REAL).unwrap();
    let out = dir.join("no-such-dir").join("out.svg");
    let e = crate::report::run(&ReportArgs {
        input: input.clone(),
        svg: Some(out.clone()),
        folded: None,
    })
    .unwrap_err();
    assert!(matches!(e, ReportError::Write { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-dir"), "{e}");

    let out = dir.join("out.svg");
    crate::report::run(&ReportArgs {
        input,
        svg: Some(out.clone()),
        folded: None,
    })
    .unwrap();
    texts(&std::fs::read_to_string(&out).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
