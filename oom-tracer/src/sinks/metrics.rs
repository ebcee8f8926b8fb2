//! Prometheus metrics, built on the `prometheus-client` crate and served by
//! [`crate::health`] on `GET /metrics` as OpenMetrics text. [`MetricsSink`]
//! counts every record the pipeline writes.
//!
//! Metric families (the names are the exposed ones; `prometheus-client`
//! appends `_total` to counters itself, so they are registered without it):
//!
//! | exposed name | type | labels |
//! |---|---|---|
//! | `oom_kills_total` | counter | `namespace`, `pod`, `container`, `verdict` |
//! | `container_kills_total` | counter | `namespace`, `pod`, `container`, `verdict` |
//! | `container_restarts_total` | counter | `namespace`, `pod`, `container` |
//! | `oom_tracer_lost_events_total` | counter | |
//! | `oom_tracer_decode_errors_total` | counter | |
//! | `oom_tracer_hook_attached` | gauge | `hook` |
//! | `oom_tracer_records_total` | counter | `event` |
//! | `oom_kill_causes_total` | counter | `namespace`, `pod`, `container`, `cause` |
//! | `near_misses_total` | counter | `namespace`, `pod`, `container` |
//! | `reclaim_stall_seconds_total` | counter | `namespace`, `pod`, `container` |
//!
//! The registry has no prefix: the first three are the names the issue asks
//! for (`oom_kills_total`, not `oom_tracer_oom_kills_total`); the tracer's
//! own health metrics carry `oom_tracer_` in their registered names.
//!
//! `verdict` is one of `memcg_oom`, `global_oom`, `sigkill_other`,
//! `exit_137_no_oom`; `container` is the empty string when unknown.
//!
//! Values are atomics and each family guards its series with an internal
//! `RwLock` (a read lock once a label set exists), so a `Metrics` is
//! shared as `Arc<Metrics>` between the event loop and the HTTP server
//! without a `Mutex`; an update costs the label set's small allocations. Series are never removed: a node that
//! sees many short-lived pods grows one series per (pod, container,
//! verdict) that was actually killed, which is what an OOM counter wants.
use std::sync::{Arc, atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{Sink, SinkError};
use crate::schema::{Body, ContainerRef, OomKind, PodRef, Record, Verdict};

/// Labels of `oom_kills_total` and `container_kills_total`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
struct KillLabels {
    namespace: String,
    pod: String,
    container: String,
    verdict: String,
}

/// Labels of `oom_kill_causes_total`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
struct CauseLabels {
    namespace: String,
    pod: String,
    container: String,
    cause: String,
}

/// Labels of `container_restarts_total`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
struct ContainerLabels {
    namespace: String,
    pod: String,
    container: String,
}

/// Labels of `oom_tracer_hook_attached`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
struct HookLabels {
    hook: String,
}

/// Labels of `oom_tracer_records_total`.
#[derive(EncodeLabelSet, Clone, Hash, PartialEq, Eq, Debug)]
struct EventLabels {
    event: String,
}

/// The tracer's metrics. Cheap to update from any thread; share it as
/// `Arc<Metrics>`.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    oom_kills: Family<KillLabels, Counter>,
    container_kills: Family<KillLabels, Counter>,
    restarts: Family<ContainerLabels, Counter>,
    lost_events: Counter,
    decode_errors: Counter,
    hook_attached: Family<HookLabels, Gauge>,
    records: Family<EventLabels, Counter>,
    causes: Family<CauseLabels, Counter>,
    near_misses: Family<ContainerLabels, Counter>,
    stall: Family<ContainerLabels, Counter<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let oom_kills = Family::<KillLabels, Counter>::default();
        let container_kills = Family::<KillLabels, Counter>::default();
        let restarts = Family::<ContainerLabels, Counter>::default();
        let lost_events = Counter::default();
        let decode_errors = Counter::default();
        let hook_attached = Family::<HookLabels, Gauge>::default();
        let records = Family::<EventLabels, Counter>::default();
        let causes = Family::<CauseLabels, Counter>::default();
        let near_misses = Family::<ContainerLabels, Counter>::default();
        let stall = Family::<ContainerLabels, Counter<f64, AtomicU64>>::default();

        // No prefix, and no `_total` in counter names: prometheus-client adds
        // it (and a `.` at the end of each help text).
        let mut registry = Registry::default();
        registry.register(
            "oom_kills",
            "Containers killed by the OOM killer, by namespace, pod, container (empty when \
             unknown) and verdict (memcg_oom: the container's cgroup hit its memory limit; \
             global_oom: the node ran out of memory)",
            oom_kills.clone(),
        );
        registry.register(
            "container_kills",
            "Container exits by SIGKILL or with code 137, by namespace, pod, container and \
             verdict (memcg_oom, global_oom, sigkill_other: killed by someone other than the \
             OOM killer, exit_137_no_oom: exited 137 with no OOM kill seen)",
            container_kills.clone(),
        );
        registry.register(
            "container_restarts",
            "Container restarts seen, by namespace, pod and container",
            restarts.clone(),
        );
        registry.register(
            "oom_tracer_lost_events",
            "Kernel events dropped because the ring buffer was full or could not be read",
            lost_events.clone(),
        );
        registry.register(
            "oom_tracer_decode_errors",
            "Kernel events read from the ring buffer that could not be decoded",
            decode_errors.clone(),
        );
        registry.register(
            "oom_tracer_hook_attached",
            "Whether the eBPF program for a kernel hook is attached (1) or not (0)",
            hook_attached.clone(),
        );
        registry.register(
            "oom_tracer_records",
            "Records emitted by the tracer, by event (the record's event field)",
            records.clone(),
        );
        registry.register(
            "oom_kill_causes",
            "OOM kills by what filled the cgroup that hit its limit (cause: anon, file, shmem, \
             kernel, sock; the largest part of its memory at the kill)",
            causes.clone(),
        );
        registry.register(
            "near_misses",
            "Times a container's cgroup stalled reclaiming at its limit and no OOM kill followed",
            near_misses.clone(),
        );
        registry.register(
            "reclaim_stall_seconds",
            "Time a container's tasks stalled in reclaim at its memory limit",
            stall.clone(),
        );

        Self {
            registry,
            oom_kills,
            container_kills,
            restarts,
            lost_events,
            decode_errors,
            hook_attached,
            records,
            causes,
            near_misses,
            stall,
        }
    }

    /// An OOM kill (`oom_kills_total`). `container` is empty when unknown;
    /// `verdict` is `memcg_oom` or `global_oom` (any of the verdicts is
    /// accepted).
    pub(crate) fn oom_kill(&self, namespace: &str, pod: &str, container: &str, verdict: &str) {
        self.oom_kills
            .get_or_create(&kill_labels(namespace, pod, container, verdict))
            .inc();
    }

    /// A container exit by SIGKILL or with code 137 (`container_kills_total`),
    /// whatever killed it: `memcg_oom`, `global_oom`, `sigkill_other` or
    /// `exit_137_no_oom`.
    pub(crate) fn sigkill(&self, namespace: &str, pod: &str, container: &str, verdict: &str) {
        self.container_kills
            .get_or_create(&kill_labels(namespace, pod, container, verdict))
            .inc();
    }

    /// A container restart (`container_restarts_total`).
    pub(crate) fn restart(&self, namespace: &str, pod: &str, container: &str) {
        self.restarts
            .get_or_create(&ContainerLabels {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                container: container.to_owned(),
            })
            .inc();
    }

    /// `n` more kernel events lost (`oom_tracer_lost_events_total`).
    pub(crate) fn lost_events(&self, n: u64) {
        self.lost_events.inc_by(n);
    }

    /// `n` more undecodable events (`oom_tracer_decode_errors_total`).
    pub(crate) fn decode_errors(&self, n: u64) {
        self.decode_errors.inc_by(n);
    }

    /// Whether the program for `hook` is attached (`oom_tracer_hook_attached`).
    pub(crate) fn hook(&self, hook: &str, attached: bool) {
        self.hook_attached
            .get_or_create(&HookLabels {
                hook: hook.to_owned(),
            })
            .set(i64::from(attached));
    }

    /// One record emitted, by its `event` name (`oom_tracer_records_total`).
    pub(crate) fn records(&self, event: &str) {
        self.records
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    /// An OOM kill's cause (`oom_kill_causes_total`).
    pub(crate) fn cause(&self, namespace: &str, pod: &str, container: &str, cause: &str) {
        self.causes
            .get_or_create(&CauseLabels {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                container: container.to_owned(),
                cause: cause.to_owned(),
            })
            .inc();
    }

    /// A near miss (`near_misses_total`).
    pub(crate) fn near_miss(&self, namespace: &str, pod: &str, container: &str) {
        self.near_misses
            .get_or_create(&container_labels(namespace, pod, container))
            .inc();
    }

    /// Seconds stalled in reclaim (`reclaim_stall_seconds_total`).
    pub(crate) fn stall(&self, namespace: &str, pod: &str, container: &str, seconds: f64) {
        self.stall
            .get_or_create(&container_labels(namespace, pod, container))
            .inc_by(seconds);
    }

    /// The OpenMetrics text exposition (ends with `# EOF`), served with
    /// `Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8`.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; the metric encoders only fail on
        // a writer error.
        encode(&mut out, &self.registry).expect("encoding metrics into a String");
        out
    }
}

fn container_labels(namespace: &str, pod: &str, container: &str) -> ContainerLabels {
    ContainerLabels {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        container: container.to_owned(),
    }
}

fn kill_labels(namespace: &str, pod: &str, container: &str, verdict: &str) -> KillLabels {
    KillLabels {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        container: container.to_owned(),
        verdict: verdict.to_owned(),
    }
}

/// The metrics as a sink: each record counts where it belongs.
pub(crate) struct MetricsSink(pub Arc<Metrics>);

/// `namespace`, `pod`, `container` labels; empty where unknown.
fn names<'a>(p: Option<&'a PodRef>, c: Option<&'a ContainerRef>) -> [&'a str; 3] {
    [
        p.and_then(|p| p.namespace.as_deref()).unwrap_or(""),
        p.and_then(|p| p.name.as_deref()).unwrap_or(""),
        c.and_then(|c| c.name.as_deref()).unwrap_or(""),
    ]
}

impl Sink for MetricsSink {
    fn write(&mut self, r: &Record) -> Result<(), SinkError> {
        let m = &self.0;
        m.records(r.event());
        match &r.body {
            Body::OomKill(o) => {
                let [ns, p, c] = names(o.pod.as_ref(), o.container.as_ref());
                let verdict = match o.kind {
                    OomKind::Memcg => Verdict::MemcgOom,
                    OomKind::Global => Verdict::GlobalOom,
                };
                m.oom_kill(ns, p, c, verdict.as_str());
                if let Some(cause) = &o.cause {
                    m.cause(ns, p, c, cause.part.as_str());
                }
            }
            Body::Pressure(r) => {
                let [ns, p, c] = names(r.pod.as_ref(), r.container.as_ref());
                m.stall(ns, p, c, r.pressure.stall_ms as f64 / 1000.0);
            }
            Body::NearMiss(n) => {
                let [ns, p, c] = names(n.pod.as_ref(), n.container.as_ref());
                m.near_miss(ns, p, c);
            }
            Body::ContainerExit(e) => {
                if let Some(v) = e.verdict {
                    let [ns, p, c] = names(Some(&e.pod), Some(&e.container));
                    m.sigkill(ns, p, c, v.as_str());
                }
            }
            Body::Restart(s) => {
                let [ns, p, c] = names(Some(&s.pod), Some(&s.container));
                m.restart(ns, p, c);
            }
            Body::Lost(l) => {
                m.lost_events(l.ringbuf_full);
                m.decode_errors(l.decode_errors);
            }
            Body::Start(s) => {
                for h in &s.hooks.active {
                    m.hook(h, true);
                }
                for h in &s.hooks.missing {
                    m.hook(&h.hook, false);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Test helpers shared with `health`'s tests: parse an exposition with the
/// `prometheus-parse` crate and look samples up.
#[cfg(test)]
pub(crate) mod testing {
    use prometheus_parse::{Scrape, Value};

    pub(crate) fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parsing the exposition")
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    ///
    /// prometheus-parse reads the Prometheus 0.0.4 text format: it skips
    /// `# EOF` as a comment but keys `# TYPE` by the family name, so
    /// OpenMetrics counter samples (`foo_total` under `# TYPE foo counter`)
    /// come back as `Value::Untyped`. Both are accepted here.
    pub(crate) fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = scrape.samples.iter().filter(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        });
        let sample = found.next()?;
        assert!(found.next().is_none(), "duplicate sample {name} {labels:?}");
        match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            ref other => panic!("{name}: unexpected value {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use prometheus_parse::Value;

    use super::{Arc, Metrics, testing};

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
        let mut sink = super::MetricsSink(m.clone());
        for r in crate::schema::tests::samples() {
            super::Sink::write(&mut sink, &r).unwrap();
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
}
