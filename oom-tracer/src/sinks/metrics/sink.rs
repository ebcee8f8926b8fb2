//! The metrics as a sink: each record the pipeline writes counts where it
//! belongs.
use std::sync::Arc;

use super::Metrics;
use crate::{
    schema::{Body, ContainerRef, OomKind, PodRef, Record, Verdict},
    sinks::{Sink, SinkError},
};

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
