//! Readiness and liveness probes, as the kubelet's prober runs them
//! (pkg/kubelet/prober): HTTP GET only.

use std::{collections::HashMap, time::Duration};

use serde_json::Value;

use super::Fields;

/// An HTTP probe, as the kubelet's prober runs it.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub path: String,
    pub port: u16,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

/// A probe (`readinessProbe`, `livenessProbe`); `ports` are the container's
/// named ports.
pub(super) fn probe(p: &Fields<'_>, ports: &HashMap<String, i64>) -> Probe {
    let http = p
        .obj("httpGet")
        .unwrap_or_else(|| panic!("{}: only httpGet probes are translated", p.path("httpGet")));
    let path = http.str("path").unwrap_or("/").to_owned();
    let port = match http.get("port").expect("httpGet.port") {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(name) => *ports
            .get(name)
            .unwrap_or_else(|| panic!("{}: no container port named {name}", http.path("port"))),
        other => panic!("{}: {other}", http.path("port")),
    };
    if let Some(s) = http.str("scheme")
        && s != "HTTP"
    {
        http.unhandled("scheme", s);
    }
    let secs = |k: &str, default: i64| Duration::from_secs(p.i64(k).unwrap_or(default) as u64);
    Probe {
        path,
        port: port.try_into().unwrap(),
        initial_delay: secs("initialDelaySeconds", 0),
        period: secs("periodSeconds", 10),
        timeout: secs("timeoutSeconds", 1),
        failure_threshold: p.i64("failureThreshold").unwrap_or(3) as u32,
        success_threshold: p.i64("successThreshold").unwrap_or(1) as u32,
    }
}
