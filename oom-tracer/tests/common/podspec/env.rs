//! A container's environment: the `kubernetes` service's variables
//! (always injected), then the container's own `env`, with the downward
//! API resolved.

use std::net::SocketAddr;

use k8s_cri::v1::KeyValue;

use super::{Fields, container::ContainerContext};

/// The container's environment variables.
pub(super) fn envs(c: &Fields<'_>, cx: &ContainerContext<'_>) -> Vec<KeyValue> {
    let mut envs = service_env(cx.node.api);
    for e in c.list("env") {
        let key = e.str("name").expect("env name").to_owned();
        let Some(value) = env_value(&e, cx) else {
            continue; // a source not translated: reported as unhandled
        };
        envs.retain(|kv| kv.key != key);
        envs.push(KeyValue { key, value });
    }
    envs
}

/// The variables of the `kubernetes` service, which the kubelet injects
/// into every container: `api` is the API server as pods reach it.
fn service_env(api: SocketAddr) -> Vec<KeyValue> {
    [
        ("KUBERNETES_SERVICE_HOST", api.ip().to_string()),
        ("KUBERNETES_SERVICE_PORT", api.port().to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", api.port().to_string()),
        ("KUBERNETES_PORT", format!("tcp://{api}")),
        (
            &format!("KUBERNETES_PORT_{}_TCP", api.port()),
            format!("tcp://{api}"),
        ),
        (
            &format!("KUBERNETES_PORT_{}_TCP_PROTO", api.port()),
            "tcp".into(),
        ),
        (
            &format!("KUBERNETES_PORT_{}_TCP_PORT", api.port()),
            api.port().to_string(),
        ),
        (
            &format!("KUBERNETES_PORT_{}_TCP_ADDR", api.port()),
            api.ip().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| KeyValue {
        key: k.to_owned(),
        value: v,
    })
    .collect()
}

/// The value of one `env` entry: `value`, or a `fieldRef` of the downward
/// API; `None` for a source this translation does not handle (left unread,
/// or recorded as unhandled).
fn env_value(e: &Fields<'_>, cx: &ContainerContext<'_>) -> Option<String> {
    if let Some(v) = e.str("value") {
        if v.contains("$(") {
            e.unhandled("value", format!("{v} (variable expansion)"));
        }
        return Some(v.to_owned());
    }
    let Some(from) = e.obj("valueFrom") else {
        return Some(String::new());
    };
    let field = from.obj("fieldRef")?; // other sources stay unread: unhandled
    field.skip("apiVersion", "v1");
    match field.str("fieldPath").expect("fieldPath") {
        "spec.nodeName" => Some(cx.node.name.clone()),
        "metadata.name" => Some(cx.pod_name.to_owned()),
        "metadata.namespace" => Some(cx.namespace.to_owned()),
        "metadata.uid" => Some(cx.uid.to_owned()),
        other => {
            field.unhandled("fieldPath", other);
            None
        }
    }
}
