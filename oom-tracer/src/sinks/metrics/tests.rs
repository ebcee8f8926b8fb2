//! The registry's exposition parsed back, and the sink's counting.
use std::{sync::Arc, thread};

use prometheus_parse::Value;

use super::{Metrics, testing};

const POD: [(&str, &str); 2] = [("namespace", "shop"), ("pod", "cart-7d9f")];

fn labels<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    POD.iter().chain(extra).copied().collect()
}

#[test]
fn encodes_and_parses_back() {
    let m = Metrics::new();
    m.oom_kill("shop", "cart-7d9f", "cart", "memcg_oom");
    m.oom_kill("shop", "cart-7d9f", "cart", "memcg_oom");
    m.oom_kill("shop", "cart-7d9f", "", "global_oom");
    m.sigkill("shop", "cart-7d9f", "cart", "memcg_oom");
    m.sigkill("shop", "cart-7d9f", "sidecar", "sigkill_other");
    m.sigkill("shop", "cart-7d9f", "sidecar", "exit_137_no_oom");
    m.restart("shop", "cart-7d9f", "cart");
    m.restart("shop", "cart-7d9f", "cart");
    m.restart("shop", "cart-7d9f", "cart");
    m.lost_events(5);
    m.lost_events(2);
    m.decode_errors(1);
    m.hook("oom_kill_process", true);
    m.hook("mem_cgroup_out_of_memory", true);
    m.hook("mem_cgroup_out_of_memory", false);
    m.records("oom_kill");
    m.records("exit");
    m.records("exit");

    let text = m.encode();
    assert!(text.ends_with("# EOF\n"), "{text}");
    for family in [
        "# TYPE oom_kills counter",
        "# TYPE container_kills counter",
        "# TYPE container_restarts counter",
        "# TYPE oom_tracer_lost_events counter",
        "# TYPE oom_tracer_decode_errors counter",
        "# TYPE oom_tracer_hook_attached gauge",
        "# TYPE oom_tracer_records counter",
    ] {
        assert!(text.contains(family), "{family} missing in\n{text}");
    }
    assert!(!text.contains("_total_total"), "{text}");

    let s = testing::parse(&text);
    let v = |name, l: &[(&str, &str)]| testing::value(&s, name, l);
    let kill = |c, verdict| labels(&[("container", c), ("verdict", verdict)]);

    assert_eq!(v("oom_kills_total", &kill("cart", "memcg_oom")), Some(2.0));
    assert_eq!(v("oom_kills_total", &kill("", "global_oom")), Some(1.0));
    assert_eq!(v("oom_kills_total", &kill("cart", "global_oom")), None);
    assert_eq!(
        v("container_kills_total", &kill("cart", "memcg_oom")),
        Some(1.0)
    );
    assert_eq!(
        v("container_kills_total", &kill("sidecar", "sigkill_other")),
        Some(1.0)
    );
    assert_eq!(
        v("container_kills_total", &kill("sidecar", "exit_137_no_oom")),
        Some(1.0)
    );
    assert_eq!(
        v(
            "container_restarts_total",
            &labels(&[("container", "cart")])
        ),
        Some(3.0)
    );
    assert_eq!(v("oom_tracer_lost_events_total", &[]), Some(7.0));
    assert_eq!(v("oom_tracer_decode_errors_total", &[]), Some(1.0));
    assert_eq!(
        v("oom_tracer_hook_attached", &[("hook", "oom_kill_process")]),
        Some(1.0)
    );
    assert_eq!(
        v(
            "oom_tracer_hook_attached",
            &[("hook", "mem_cgroup_out_of_memory")]
        ),
        Some(0.0)
    );
    assert_eq!(
        v("oom_tracer_records_total", &[("event", "exit")]),
        Some(2.0)
    );
    assert_eq!(
        v("oom_tracer_records_total", &[("event", "oom_kill")]),
        Some(1.0)
    );
    // The gauge's TYPE line matches its sample name, so the parser types it.
    let gauge = s
        .samples
        .iter()
        .find(|x| x.metric == "oom_tracer_hook_attached")
        .unwrap();
    assert!(matches!(gauge.value, Value::Gauge(_)), "{gauge:?}");
    // 7 families of samples used: 2 + 3 + 1 + 1 + 1 + 2 + 2.
    assert_eq!(s.samples.len(), 12, "{text}");
    // Help texts are there, with the full stop prometheus-client adds.
    assert!(s.docs["oom_kills"].starts_with("Containers killed by the OOM killer"));
    assert!(s.docs["oom_kills"].ends_with('.'));
    assert_eq!(
        s.docs.len(),
        7,
        "families without samples have no help text"
    );
}

#[test]
fn empty_registry_has_zero_counters() {
    let s = testing::parse(&Metrics::new().encode());
    assert_eq!(
        testing::value(&s, "oom_tracer_lost_events_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        testing::value(&s, "oom_tracer_decode_errors_total", &[]),
        Some(0.0)
    );
    // Labelled families have no series until first used.
    assert_eq!(s.samples.len(), 2);
}

#[test]
fn the_sink_counts_records() {
    let m = Arc::new(Metrics::new());
    let mut sink = super::MetricsSink::new(m.clone());
    for r in crate::schema::tests::samples() {
        crate::sinks::Sink::write(&mut sink, &r).unwrap();
    }
    let s = testing::parse(&m.encode());
    let v = |name, l: &[(&str, &str)]| testing::value(&s, name, l);
    let kill = [
        ("namespace", "default"),
        ("pod", "stress"),
        ("container", "stress"),
        ("verdict", "memcg_oom"),
    ];
    assert_eq!(v("oom_kills_total", &kill), Some(1.0));
    assert_eq!(v("container_kills_total", &kill), Some(1.0));
    assert_eq!(v("container_restarts_total", &kill[..3]), Some(1.0));
    assert_eq!(v("oom_tracer_lost_events_total", &[]), Some(3.0));
    // Malformed ring-buffer records reach the metric (it used to stay 0).
    assert_eq!(v("oom_tracer_decode_errors_total", &[]), Some(2.0));
    assert_eq!(
        v("oom_tracer_hook_attached", &[("hook", "tp_btf/rss_stat")]),
        Some(0.0)
    );
    assert_eq!(
        v("oom_tracer_records_total", &[("event", "cycle")]),
        Some(1.0)
    );
}

/// A kill written before its container's names were known is counted
/// when they come, with them.
#[test]
fn a_kill_without_names_is_counted_when_they_come() {
    let m = Arc::new(Metrics::new());
    let mut sink = super::MetricsSink::new(m.clone());
    let mut kill = crate::schema::tests::samples().swap_remove(5);
    let crate::schema::Body::OomKill(o) = &mut kill.body else {
        panic!("sample 5 is the oom_kill")
    };
    let (pod, ctr) = (o.pod.clone().unwrap(), o.container.clone().unwrap());
    let p = o.pod.as_mut().unwrap();
    (p.name, p.namespace) = (None, None);
    o.container.as_mut().unwrap().name = None;
    crate::sinks::Sink::write(&mut sink, &kill).unwrap();
    let count = |m: &Metrics| {
        let s = testing::parse(&m.encode());
        let named = [
            ("namespace", "default"),
            ("pod", "stress"),
            ("container", "stress"),
            ("verdict", "memcg_oom"),
        ];
        let unnamed = [
            ("namespace", ""),
            ("pod", ""),
            ("container", ""),
            ("verdict", "memcg_oom"),
        ];
        (
            testing::value(&s, "oom_kills_total", &named),
            testing::value(&s, "oom_kills_total", &unnamed),
        )
    };
    assert_eq!(count(&m), (None, None), "waits for the names");
    crate::sinks::Sink::named(&mut sink, &pod, &ctr).unwrap();
    assert_eq!(count(&m), (Some(1.0), None));
}

#[test]
fn shared_across_threads() {
    let m = Arc::new(Metrics::new());
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            thread::spawn(move || {
                for _ in 0..1000 {
                    m.records("alloc");
                    m.lost_events(1);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let s = testing::parse(&m.encode());
    assert_eq!(
        testing::value(&s, "oom_tracer_records_total", &[("event", "alloc")]),
        Some(4000.0)
    );
    assert_eq!(
        testing::value(&s, "oom_tracer_lost_events_total", &[]),
        Some(4000.0)
    );
}
