//! Lanes, attempts, back-off gaps and limit lines from made-up records.
use serde_json::json;

use super::*;

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
    let r = input::from_str(&lines.join("\n"));
    let lane = &r.lanes[0];
    assert_eq!(lane.exits.len(), 1);
    assert_eq!(lane.exits[0].label, "1");
    assert_eq!(lane.exits[0].code, Some(1));
    assert!(lane.limits.is_empty());
}
