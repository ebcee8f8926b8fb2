//! The metrics as a sink: each record the pipeline writes counts where it
//! belongs.
use std::{sync::Arc, time::Duration};

use super::Metrics;
use crate::{
    schema::{Body, ContainerRef, OomKill, OomKind, PodRef, Record, Verdict},
    sinks::{
        Sink, SinkError,
        unnamed::{Unnamed, is_named},
    },
};

/// How long a kill of a container not named yet waits for its names
/// before it is counted without them.
const NAMES_WAIT: Duration = Duration::from_secs(60);

/// The metrics as a sink: each record counts where it belongs.
pub(crate) struct MetricsSink {
    m: Arc<Metrics>,
    /// Kills written before their container's names were known.
    unnamed: Unnamed<OomKill>,
}

impl MetricsSink {
    pub(crate) fn new(m: Arc<Metrics>) -> Self {
        Self {
            m,
            unnamed: Unnamed::new(NAMES_WAIT, 4096),
        }
    }

    /// `oom_kills_total` and `oom_kill_causes_total` for `o`.
    fn kill(&self, o: &OomKill) {
        let [ns, p, c] = names(o.pod.as_ref(), o.container.as_ref());
        let verdict = match o.kind {
            OomKind::Memcg => Verdict::MemcgOom,
            OomKind::Global => Verdict::GlobalOom,
        };
        self.m.oom_kill(ns, p, c, verdict.as_str());
        if let Some(cause) = &o.cause {
            self.m.cause(ns, p, c, cause.part.as_str());
        }
    }

    fn expire(&mut self) {
        for o in self.unnamed.expired() {
            self.kill(&o);
        }
    }
}

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
        self.expire();
        let m = &self.m;
        m.records(r.event());
        match &r.body {
            Body::OomKill(o) => {
                if is_named(o.pod.as_ref(), o.container.as_ref()) {
                    self.kill(o);
                } else if let Err(o) =
                    self.unnamed
                        .keep(o.pod.as_ref(), o.container.as_ref(), o.clone())
                {
                    self.kill(&o);
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

    fn named(&mut self, pod: &PodRef, c: &ContainerRef) -> Result<(), SinkError> {
        for mut o in self.unnamed.named(pod, c) {
            (o.pod, o.container) = (Some(pod.clone()), Some(c.clone()));
            self.kill(&o);
        }
        self.expire();
        Ok(())
    }
}
