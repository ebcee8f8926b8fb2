//! The call sites of each kill: in the model, and in the table below the
//! chart (numbered as the markers), escaped; a kill without them as before.
use serde_json::{Value, json};

use super::*;
use crate::report::model::KillSite;

/// `oom-tracer run --memory-limit 48Mi --max-restarts 2 --backoff-initial
/// 200ms --alloc-step 2Mi -- stress --two-sites --step 4Mi --interval 5ms`
/// (a debug `stress`, without frame pointers: shallow stacks).
const CALLSITES: &str = include_str!("../../../tests/fixtures/run-callsites.ndjson");

const TITLE: &str = "Call sites at each OOM kill: the ramp's largest, by share of its growth \
                     (innermost named frame ← its caller)";

fn frame(symbol: Option<&str>, unsure: bool) -> Value {
    json!({"addr": "0x10", "symbol": symbol, "module": "/app/bin", "offset": 16,
           "build_id": "ab", "unsure": unsure})
}

fn stack(frames: Vec<Value>, shallow: bool, missing: Option<&str>) -> Value {
    json!({"frames": frames, "depth": frames.len(), "shallow": shallow, "missing": missing})
}

/// A `callsites` object with `top` (bytes, share, stack).
fn callsites(top: Vec<(u64, f64, Value)>) -> Value {
    let gone = stack(vec![], false, Some("gone"));
    let ramp: u64 = top.iter().map(|s| s.0).sum();
    let top: Vec<Value> = top
        .into_iter()
        .map(|(bytes, share, stack)| json!({"bytes": bytes, "share_pct": share, "stack": stack}))
        .collect();
    json!({"unwinder": "frame_pointers", "trigger_user": gone, "trigger_kernel": gone,
           "site_count": top.len(), "top": top, "ramp_bytes": ramp})
}

/// The two sites of `stress --two-sites` built with frame pointers.
fn two_sites() -> Value {
    let site = |f: &str| {
        stack(
            vec![frame(Some(f), false), frame(Some("app::main"), false)],
            false,
            None,
        )
    };
    callsites(vec![
        (45 * MIB, 71.4, site("app::grow_fast")),
        (18 * MIB, 28.6, site("app::grow_slow")),
    ])
}

/// `lines` with `sites(n)` as the callsites of the n-th kill (none where
/// it gives `None`).
fn with_sites(lines: &mut [String], sites: impl Fn(usize) -> Option<Value>) {
    let kills = lines
        .iter_mut()
        .filter(|l| l.contains(r#""event":"oom_kill""#));
    for (n, l) in kills.enumerate() {
        let mut v: Value = serde_json::from_str(l).unwrap();
        if let Some(c) = sites(n) {
            v["callsites"] = c;
        }
        *l = v.to_string();
    }
}

/// `n` attempts, each ending in a kill.
fn crash_loop(n: u32) -> Vec<String> {
    let (mut lines, mut t) = (Vec::new(), 0);
    for i in 0..n {
        attempt(&mut lines, &mut t, i, 3, 10);
        t += 10;
    }
    lines
}

#[test]
fn report_sites_of_a_real_run() {
    let (r, svg) = render(CALLSITES);
    assert_eq!(r.skipped, 0);
    let lane = &r.lanes[0];
    assert_eq!(lane.kills.len(), 3);
    for k in &lane.kills {
        let sites = k.sites.as_ref().expect("every kill of the run has sites");
        assert_eq!(sites.site_count, 2);
        let top: Vec<_> = sites.top.iter().map(|s| s.frames.as_str()).collect();
        assert_eq!(
            top,
            [
                "stress::grow_fast ← std::rt::lang_start?",
                "stress::grow_slow ← std::rt::lang_start?"
            ],
            "the innermost named frame and its (unsure) caller"
        );
        assert!(sites.top.iter().all(|s| s.shallow));
        assert!(sites.top[0].share_pct > 60.0, "{:?}", sites.top);
        assert_eq!(
            sites.top.iter().map(|s| s.bytes).sum::<u64>(),
            sites.ramp_bytes
        );
    }
    let t = texts(&svg);
    assert_eq!(
        t.iter().filter(|s| s.starts_with("OOM kill")).count(),
        3,
        "{t:?}"
    );
    assert!(t.iter().any(|s| s == TITLE), "{t:?}");
    assert_eq!(
        t.iter()
            .filter(|s| *s == "74% stress::grow_fast ← std::rt::lang_start? [shallow]")
            .count(),
        3,
        "a row per kill: {t:?}"
    );
    assert_eq!(
        t.iter()
            .filter(|s| *s == "26% stress::grow_slow ← std::rt::lang_start? [shallow]")
            .count(),
        3,
        "{t:?}"
    );
    assert!(t.iter().any(|s| s == "kill no.: its call sites below"));
    // Each number twice: at its marker and in its row.
    for n in ["1", "2", "3"] {
        assert_eq!(
            t.iter().filter(|s| *s == n).count(),
            2 + usize::from(n == "1"),
            "{n}: {t:?}"
        );
    }
}

#[test]
fn report_without_sites_renders_as_before() {
    let (r, svg) = render(REAL);
    assert!(r.lanes[0].kills.iter().all(|k| k.sites.is_none()));
    let t = texts(&svg);
    assert!(
        !t.iter().any(|s| s == TITLE || s.contains("kill no.")),
        "{t:?}"
    );
    assert!(
        svg.contains(r#"<svg width="1280" height="400""#),
        "one lane's height, no table: {}",
        &svg[..120]
    );
    assert_eq!(t.iter().filter(|s| s.starts_with("OOM kill")).count(), 3);
}

#[test]
fn report_sites_are_escaped_and_missing_ones_say_why() {
    let mut lines = crash_loop(4);
    let odd = "<Vec<u8> as Drop>::drop&\"'\u{7}";
    with_sites(&mut lines, |n| match n {
        0 => Some(callsites(vec![
            (
                3 * MIB,
                75.0,
                stack(vec![frame(Some(odd), false)], true, None),
            ),
            (MIB, 25.0, stack(vec![], false, Some("gone"))),
        ])),
        1 => None,
        2 => Some(callsites(vec![])),
        // Unnamed innermost frames: the first named one and its caller.
        _ => Some(callsites(vec![(
            MIB,
            100.0,
            stack(
                vec![
                    frame(None, false),
                    frame(Some("app::fill"), false),
                    frame(None, true),
                ],
                true,
                None,
            ),
        )])),
    });
    let (r, svg) = render(&lines.join("\n"));
    let kills = &r.lanes[0].kills;
    assert!(kills[1].sites.is_none());
    assert!(
        svg.contains("&lt;Vec&lt;u8&gt; as Drop&gt;::drop&amp;&quot;&apos;"),
        "escaped"
    );
    let t = texts(&svg);
    let want = [
        "75% <Vec<u8> as Drop>::drop&\"'\u{fffd} [shallow]",
        "25% [no stack: gone]",
        "no call sites in the record",
        "none: no growth step was sampled in the cgroup",
        "100% app::fill ← bin+0x10? [shallow]",
    ];
    for w in want {
        assert!(t.iter().any(|s| s == w), "{w}: {t:?}");
    }
}

#[test]
fn report_sites_of_a_crash_loop_stay_apart() {
    let mut lines = crash_loop(20);
    with_sites(&mut lines, |_| Some(two_sites()));
    let (r, svg) = render(&lines.join("\n"));
    assert_eq!(r.lanes[0].kills.len(), 20);
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let rows: Vec<(String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter(|n| {
            n.text()
                .is_some_and(|t| t.trim().starts_with("71% app::grow_fast ← app::main"))
        })
        .map(|n| {
            (
                n.attribute("x").unwrap().to_owned(),
                n.attribute("y").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 20, "a row per kill");
    let mut ys: Vec<f64> = rows.iter().map(|r| r.1.parse().unwrap()).collect();
    assert!(rows.iter().all(|r| r.0 == rows[0].0), "one column");
    ys.dedup();
    assert!(
        ys.windows(2).all(|w| w[1] - w[0] >= 16.0),
        "rows do not overlap: {ys:?}"
    );
    let t = texts(&svg);
    for n in 1..=20 {
        assert!(t.iter().any(|s| *s == n.to_string()), "row {n}");
    }
    assert_eq!(
        t.iter()
            .filter(|s| *s == "29% app::grow_slow ← app::main")
            .count(),
        20
    );

    // More kills than rows: the rest are counted.
    let mut lines = crash_loop(33);
    with_sites(&mut lines, |_| Some(two_sites()));
    let t = texts(&render(&lines.join("\n")).1);
    assert_eq!(
        t.iter()
            .filter(|s| s.starts_with("71% app::grow_fast"))
            .count(),
        30
    );
    assert!(t.iter().any(|s| s.starts_with("… 3 more kills")), "{t:?}");
}

#[test]
fn report_site_text_keeps_share_and_mark_when_shortened() {
    let long = format!("{}::grow", "very_long_module".repeat(6));
    let s = KillSite {
        frames: format!("{long} ← {long}"),
        shallow: true,
        bytes: 1,
        share_pct: 0.2,
    };
    let text = svg::site_text(&s, 50);
    assert!(text.chars().count() <= 50, "{text}");
    assert!(text.starts_with("<1% very_long"), "{text}");
    assert!(text.ends_with("::grow [shallow]"), "{text}");
    assert!(text.contains(" ← "), "{text}");
}
