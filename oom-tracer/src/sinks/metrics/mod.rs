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
use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

mod sink;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub(crate) use sink::MetricsSink;

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
    /// A record's `event` name: a fixed set, so no allocation per record.
    event: &'static str,
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
            .get_or_create(&container_labels(namespace, pod, container))
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
    pub(crate) fn records(&self, event: &'static str) {
        self.records.get_or_create(&EventLabels { event }).inc();
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
