//! The Kubernetes Event posted on a pod for an OOM kill (`--post-events`).
use crate::record::{Body, Record};

/// The Kubernetes Event for an `oom_kill` record of a known pod.
pub fn oom_event(r: &Record) -> Option<crate::meta::kube::OomEvent> {
    let Body::OomKill {
        victim,
        trigger,
        memcg,
        pod: Some(pod),
        container,
        kind,
        ..
    } = &r.body
    else {
        return None;
    };
    let b = crate::quantity::format_bytes;
    let limit = match memcg {
        Some(m) => format!(
            "{} limit hit: usage {} of {}",
            m.level
                .and_then(|l| serde_json::to_value(l).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "memory cgroup".into()),
            b(m.usage_bytes),
            b(m.limit_bytes)
        ),
        None => format!("{kind} OOM"),
    };
    Some(crate::meta::kube::OomEvent {
        namespace: pod.namespace.clone()?,
        pod: pod.name.clone()?,
        uid: pod.uid.clone(),
        container: container.as_ref().and_then(|c| c.name.clone()),
        message: format!(
            "OOM kill: victim {} (pid {}, anon {}), triggered by {} (pid {}); {limit}",
            victim.comm,
            victim.pid,
            victim.anon_rss_bytes.map_or("?".into(), b),
            trigger.comm,
            trigger.pid
        ),
    })
}
