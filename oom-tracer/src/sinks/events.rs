//! Kubernetes Events for OOM kills (`agent --post-events`): a `Warning`
//! Event with reason `OOMKilled` on the pod, which `kubectl describe pod`
//! shows. Posting happens on a task of its own; a full queue or a failed
//! post is logged and counted, never fatal.
use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};
use kube::{Api, Client};

use super::{
    Sink, SinkError,
    unnamed::{Unnamed, is_named},
};
use crate::{
    quantity::format_bytes,
    schema::{Body, ContainerRef, OomKill, PodRef, Record},
};

/// What an Event says about one OOM kill of a known pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OomEvent {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: Option<String>,
    pub message: String,
}

impl OomEvent {
    /// The Event for an `oom_kill` of a pod whose name is known.
    pub(crate) fn of(o: &OomKill) -> Option<Self> {
        let pod = o.pod.as_ref()?;
        let b = format_bytes;
        let limit = match &o.memcg {
            Some(m) => format!(
                "{} limit hit: usage {} of {}",
                m.level.map_or("memory cgroup", |l| l.as_str()),
                b(m.usage_bytes),
                b(m.limit_bytes)
            ),
            None => "global OOM".to_owned(),
        };
        Some(Self {
            namespace: pod.namespace.clone()?,
            pod: pod.name.clone()?,
            uid: pod.uid.clone(),
            container: o.container.as_ref().and_then(|c| c.name.clone()),
            message: format!(
                "OOM kill: victim {} (pid {}, anon {}), triggered by {} (pid {}); {limit}{}{}",
                o.victim.comm,
                o.victim.pid,
                o.victim.anon_rss_bytes.map_or("?".into(), b),
                o.trigger.comm,
                o.trigger.pid,
                o.cause
                    .as_ref()
                    .map(|c| format!("; cause: {}", c.text))
                    .unwrap_or_default(),
                o.callsites
                    .as_ref()
                    .and_then(|c| c.top.first())
                    .map(|s| format!(
                        "; top site: {} ({:.1}% of the growth)",
                        s.stack.top_label(),
                        s.share_pct
                    ))
                    .unwrap_or_default()
            ),
        })
    }

    /// The API object, as reported by this node's agent.
    pub(crate) fn object(&self, node: Option<&str>, now: Time) -> Event {
        Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.oom-tracer-", self.pod)),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(self.pod.clone()),
                namespace: Some(self.namespace.clone()),
                uid: Some(self.uid.clone()),
                field_path: self
                    .container
                    .as_ref()
                    .map(|c| format!("spec.containers{{{c}}}")),
                ..Default::default()
            },
            reason: Some("OOMKilled".into()),
            message: Some(self.message.clone()),
            type_: Some("Warning".into()),
            source: Some(EventSource {
                component: Some("oom-tracer".into()),
                host: node.map(str::to_owned),
            }),
            reporting_component: Some("oom-tracer".into()),
            reporting_instance: Some(node.unwrap_or("oom-tracer").to_owned()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        }
    }
}

/// How long a kill whose pod has no name yet waits for it; the Event is
/// posted when the name comes, or dropped (logged) after this.
const NAMES_WAIT: Duration = Duration::from_secs(300);

/// Posts an Event for each OOM kill of a known pod.
pub(crate) struct KubeEvents {
    tx: tokio::sync::mpsc::Sender<OomEvent>,
    dropped: u64,
    /// Kills written before their pod's names were known.
    unnamed: Unnamed<OomKill>,
}

impl KubeEvents {
    /// Starts the posting task on the current runtime.
    pub(crate) fn spawn(client: Client, node: Option<String>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<OomEvent>(256);
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let api: Api<Event> = Api::namespaced(client.clone(), &ev.namespace);
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                let obj = ev.object(node.as_deref(), now);
                if let Err(e) = api.create(&Default::default(), &obj).await {
                    tracing::warn!(
                        "posting the OOM Event for pod {}/{}: {e}",
                        ev.namespace,
                        ev.pod
                    );
                }
            }
        });
        Self {
            tx,
            dropped: 0,
            unnamed: Unnamed::new(NAMES_WAIT, 1024),
        }
    }

    /// A sink posting into `tx` (tests read what it would post).
    #[cfg(test)]
    fn into_channel(tx: tokio::sync::mpsc::Sender<OomEvent>) -> Self {
        Self {
            tx,
            dropped: 0,
            unnamed: Unnamed::new(NAMES_WAIT, 1024),
        }
    }

    fn post(&mut self, ev: OomEvent) {
        if self.tx.try_send(ev).is_err() {
            self.dropped += 1;
            tracing::warn!(
                "Kubernetes Event queue full: {} Events dropped",
                self.dropped
            );
        }
    }

    fn expire(&mut self) {
        for o in self.unnamed.expired() {
            self.dropped += 1;
            tracing::warn!(
                "no Event for the OOM kill of pid {} in pod uid {}: its name never came \
                 ({} Events dropped)",
                o.victim.pid,
                o.pod.as_ref().map_or("?", |p| p.uid.as_str()),
                self.dropped
            );
        }
    }
}

impl Sink for KubeEvents {
    fn write(&mut self, r: &Record) -> Result<(), SinkError> {
        self.expire();
        let Body::OomKill(o) = &r.body else {
            return Ok(());
        };
        if let Some(ev) = OomEvent::of(o) {
            self.post(ev);
        } else if !is_named(o.pod.as_ref(), o.container.as_ref()) {
            // A kill of a container not named yet: its Event waits.
            let _ = self
                .unnamed
                .keep(o.pod.as_ref(), o.container.as_ref(), o.clone());
        }
        Ok(())
    }

    fn named(&mut self, pod: &PodRef, c: &ContainerRef) -> Result<(), SinkError> {
        for mut o in self.unnamed.named(pod, c) {
            (o.pod, o.container) = (Some(pod.clone()), Some(c.clone()));
            if let Some(ev) = OomEvent::of(&o) {
                self.post(ev);
            }
        }
        self.expire();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Body, tests::samples};

    /// A kill written before its pod's names were known: its Event is
    /// posted when they come, with them.
    #[test]
    fn the_event_of_a_kill_without_names_waits_for_them() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let mut sink = KubeEvents::into_channel(tx);
        let mut kill = samples().swap_remove(5);
        let Body::OomKill(o) = &mut kill.body else {
            panic!("sample 5 is the oom_kill")
        };
        let (pod, ctr) = (o.pod.clone().unwrap(), o.container.clone().unwrap());
        (
            o.pod.as_mut().unwrap().name,
            o.container.as_mut().unwrap().name,
        ) = (None, None);
        sink.write(&kill).unwrap();
        assert!(rx.try_recv().is_err(), "no Event without the pod's name");
        sink.named(&pod, &ctr).unwrap();
        let ev = rx.try_recv().expect("posted once the names came");
        assert_eq!(
            (ev.pod.as_str(), ev.container.as_deref()),
            ("stress", Some("stress"))
        );
    }

    #[test]
    fn an_event_names_the_pod_the_victim_and_the_limit() {
        let Body::OomKill(o) = &samples()[5].body else {
            panic!()
        };
        let ev = OomEvent::of(o).unwrap();
        assert_eq!(ev.namespace, "default");
        assert_eq!(ev.pod, "stress");
        assert_eq!(ev.container.as_deref(), Some("stress"));
        assert!(
            ev.message
                .contains("victim stress (pid 7, anon 50Mi), triggered by stress (pid 7); container limit hit: usage 50Mi of 50Mi"),
            "{}",
            ev.message
        );
        let obj = ev.object(
            Some("node-1"),
            Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(obj.reason.as_deref(), Some("OOMKilled"));
        assert_eq!(obj.type_.as_deref(), Some("Warning"));
        assert_eq!(
            obj.involved_object.field_path.as_deref(),
            Some("spec.containers{stress}")
        );
        let mut unnamed = o.clone();
        unnamed.pod.as_mut().unwrap().name = None;
        assert!(
            OomEvent::of(&unnamed).is_none(),
            "no Event without a pod name"
        );
    }
}
