//! A stand-in for the Kubernetes API server, for the pod list/watch the
//! agent's reflector does: real Pod JSON, resourceVersions, `watch=true`
//! streams from a resourceVersion, and `fieldSelector=spec.nodeName=...`.
//! No kube-apiserver can be had on the test machine; this serves the same
//! wire format on 127.0.0.1 (plain HTTP), or, as a pod's in-cluster config
//! needs it, over TLS on any address with a bearer token it checks
//! ([`ApiServer::start_tls`]).

use std::{
    io::{BufRead as _, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use serde_json::{Value, json};

#[derive(Default)]
struct State {
    rv: u64,
    /// (resourceVersion, type, pod), in order.
    events: Vec<(u64, &'static str, Value)>,
    /// The current pods by uid (the last version of each; deleted ones gone).
    current: std::collections::BTreeMap<String, Value>,
    /// Request lines seen.
    requests: Vec<String>,
    /// Requests refused for a missing or wrong bearer token.
    unauthorized: Vec<String>,
    /// Events POSTed (bodies).
    events_posted: Vec<Value>,
    closed: bool,
}

pub(crate) struct ApiServer {
    pub port: u16,
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
}

/// How a connection is served: plain, or TLS with this server config; and
/// the bearer token every request must carry, if any.
#[derive(Clone, Default)]
struct Security {
    tls: Option<Arc<rustls::ServerConfig>>,
    token: Option<Arc<str>>,
}

/// A kubeconfig for an API server on 127.0.0.1:`port` (listening or not).
pub(crate) fn kubeconfig_for(port: u16, dir: &std::path::Path) -> PathBuf {
    let path = dir.join(format!("kubeconfig-{port}"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: nobody\ncurrent-context: stand-in\nusers:\n- name: nobody\n  user: {{}}\n"
        ),
    )
    .unwrap();
    path
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%3d", "=")
                .replace("%2F", "/")
        })
    })
}

impl ApiServer {
    pub(crate) fn start() -> Self {
        Self::start_on(0)
    }

    /// On a given port (0: any), e.g. to come back where a stopped one was.
    pub(crate) fn start_on(port: u16) -> Self {
        Self::listen(([127, 0, 0, 1], port).into(), Security::default())
    }

    /// HTTPS on `addr` with `tls` (a certificate the client's CA signed),
    /// answering only requests that carry `Authorization: Bearer <token>`,
    /// as the API server does for a pod's service account.
    pub(crate) fn start_tls(addr: SocketAddr, tls: Arc<rustls::ServerConfig>, token: &str) -> Self {
        Self::listen(
            addr,
            Security {
                tls: Some(tls),
                token: Some(token.into()),
            },
        )
    }

    fn listen(addr: SocketAddr, security: Security) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if st.0.lock().unwrap().closed {
                    // Stopped: drop the listener, the port is free again.
                    return;
                }
                let st = st.clone();
                let security = security.clone();
                std::thread::spawn(move || match &security.tls {
                    None => serve(conn, st, security.token),
                    Some(tls) => {
                        let Ok(tls) = rustls::ServerConnection::new(tls.clone()) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(tls, conn), st, security.token);
                    }
                });
            }
        });
        Self {
            port: addr.port(),
            addr,
            state,
        }
    }

    /// A kubeconfig that points at this server.
    pub(crate) fn kubeconfig(&self, dir: &std::path::Path) -> PathBuf {
        kubeconfig_for(self.port, dir)
    }

    /// Adds or replaces a pod (ADDED or MODIFIED) and wakes the watchers.
    pub(crate) fn upsert(&self, pod: Value) {
        self.upsert_many([pod]);
    }

    /// Adds or replaces many pods at once (one wake-up for the watchers).
    pub(crate) fn upsert_many(&self, pods: impl IntoIterator<Item = Value>) {
        let (m, cv) = &*self.state;
        let mut s = m.lock().unwrap();
        for mut pod in pods {
            s.rv += 1;
            pod["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let exists = s.current.insert(uid, pod.clone()).is_some();
            let rv = s.rv;
            s.events
                .push((rv, if exists { "MODIFIED" } else { "ADDED" }, pod));
        }
        cv.notify_all();
    }

    /// Deletes a pod (DELETED) and wakes the watchers.
    pub(crate) fn delete(&self, uid: &str) {
        let (m, cv) = &*self.state;
        let mut s = m.lock().unwrap();
        let Some(mut pod) = s.current.remove(uid) else {
            return;
        };
        s.rv += 1;
        pod["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let rv = s.rv;
        s.events.push((rv, "DELETED", pod));
        cv.notify_all();
    }

    /// How many pods the server holds now.
    pub(crate) fn pod_count(&self) -> usize {
        self.state.0.lock().unwrap().current.len()
    }

    pub(crate) fn events_posted(&self) -> Vec<Value> {
        self.state.0.lock().unwrap().events_posted.clone()
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// Request lines refused for a missing or wrong bearer token.
    pub(crate) fn unauthorized(&self) -> Vec<String> {
        self.state.0.lock().unwrap().unauthorized.clone()
    }

    /// The current pods (last version of each).
    fn pods(s: &State) -> impl Iterator<Item = &Value> {
        s.current.values()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let (m, cv) = &*self.state;
        m.lock().unwrap().closed = true;
        cv.notify_all();
        // Unblock the accept loop so the port is released.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve<S: Read + Write>(conn: S, st: Arc<(Mutex<State>, Condvar)>, token: Option<Arc<str>>) {
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || st.0.lock().unwrap().closed {
            return;
        }
        let request = line.trim().to_owned();
        let mut content_len = 0usize;
        let mut authorized = token.is_none();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_len = v.trim().parse().unwrap_or(0);
            }
            if let (Some(want), Some(v)) = (&token, lower.strip_prefix("authorization:")) {
                // The scheme is case-insensitive, the token is not.
                let value = h[h.len() - v.len()..].trim();
                authorized |= value.len() > 7
                    && value[..7].eq_ignore_ascii_case("bearer ")
                    && value[7..].trim() == &**want;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        let mut body = vec![0; content_len];
        let _ = reader.read_exact(&mut body);
        if !authorized {
            st.0.lock().unwrap().unauthorized.push(request.clone());
            let body = json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}).to_string();
            let conn = reader.get_mut();
            let _ = write!(
                conn,
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.flush();
            continue;
        }
        st.0.lock().unwrap().requests.push(request.clone());
        let conn = reader.get_mut();
        let target = request.split_whitespace().nth(1).unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if request.starts_with("POST ")
            && path.starts_with("/api/v1/namespaces/")
            && path.ends_with("/events")
        {
            let mut ev: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let n = {
                let mut s = st.0.lock().unwrap();
                s.events_posted.push(ev.clone());
                s.events_posted.len()
            };
            let prefix = ev["metadata"]["generateName"]
                .as_str()
                .unwrap_or("event.")
                .to_owned();
            ev["metadata"]["name"] = json!(format!("{prefix}{n}"));
            let out = ev.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{out}",
                out.len()
            );
            let _ = conn.flush();
            continue;
        }
        if path != "/api/v1/pods" {
            let body = json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}).to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            continue;
        }
        let node = query_param(query, "fieldSelector")
            .and_then(|f| f.strip_prefix("spec.nodeName=").map(str::to_owned));
        let selected = |p: &Value| node.as_deref().is_none_or(|n| node_of(p) == n);
        if query_param(query, "watch").is_some_and(|w| w == "true" || w == "1") {
            let from: u64 = query_param(query, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            let _ = conn.flush();
            let mut sent = from;
            let (m, cv) = &*st;
            let mut s = m.lock().unwrap();
            loop {
                if s.closed {
                    return;
                }
                // Events are in resourceVersion order: skip the sent ones.
                let first = s.events.partition_point(|(rv, _, _)| *rv <= sent);
                let new: Vec<(u64, &'static str, Value)> = s.events[first..]
                    .iter()
                    .filter(|(_, _, p)| selected(p))
                    .cloned()
                    .collect();
                for (rv, ty, pod) in new {
                    let ev = format!("{}\n", json!({"type": ty, "object": pod}));
                    if write!(conn, "{:x}\r\n{ev}\r\n", ev.len())
                        .and_then(|()| conn.flush())
                        .is_err()
                    {
                        return;
                    }
                    sent = rv;
                }
                sent = sent.max(s.rv);
                s = cv.wait_timeout(s, Duration::from_millis(500)).unwrap().0;
            }
        }
        let s = st.0.lock().unwrap();
        let items: Vec<&Value> = ApiServer::pods(&s).filter(|p| selected(p)).collect();
        let body = json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": s.rv.to_string()},
            "items": items,
        })
        .to_string();
        drop(s);
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.flush();
    }
}

/// Pod JSON as the API would return it for a running container.
pub(crate) fn pod_json(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    container: &str,
    container_id: &str,
    restarts: i32,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [
            {"name": container, "image": "localhost/oom-tracer/stress:test",
             "resources": {"limits": {"memory": "50Mi"}, "requests": {"memory": "50Mi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": container, "image": "localhost/oom-tracer/stress:test", "imageID": "", "ready": true,
             "restartCount": restarts, "containerID": format!("containerd://{container_id}"),
             "state": {"running": {"startedAt": "2026-11-27T00:00:00Z"}}}]}
    })
}

/// Pod JSON of the size and shape the API serves for a typical workload:
/// labels, annotations, owner, managed fields, env, mounts, probes, volumes,
/// conditions (about 6 KB). The agent reads a small part of it.
pub(crate) fn realistic_pod_json(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    container: &str,
    container_id: Option<&str>,
    restarts: i32,
) -> Value {
    let mut pod = pod_json(
        namespace,
        name,
        uid,
        node,
        container,
        container_id.unwrap_or_default(),
        restarts,
    );
    if container_id.is_none() {
        pod["status"]["containerStatuses"][0]
            .as_object_mut()
            .unwrap()
            .remove("containerID");
    }
    let env: Vec<Value> = (0..12)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}-{name}")}))
        .collect();
    let md = &mut pod["metadata"];
    md["labels"] = json!({
        "app.kubernetes.io/name": name, "app.kubernetes.io/instance": format!("{name}-prod"),
        "app.kubernetes.io/version": "1.4.2", "pod-template-hash": "7d9c5b8f4d", "tier": "backend",
    });
    md["annotations"] = json!({
        "kubectl.kubernetes.io/restartedAt": "2026-11-27T10:00:00Z",
        "prometheus.io/scrape": "true", "prometheus.io/port": "9090",
        "checksum/config": "3b1f0c1e6f2a4d5b8c9e0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d",
    });
    md["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": format!("{name}-7d9c5b8f4d"), "uid": "11111111-2222-4333-8444-555555555555",
        "controller": true, "blockOwnerDeletion": true}]);
    md["creationTimestamp"] = json!("2026-11-27T09:00:00Z");
    md["generateName"] = json!(format!("{name}-7d9c5b8f4d-"));
    md["managedFields"] = json!([
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-27T09:00:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {"f:app.kubernetes.io/name": {}, "f:pod-template-hash": {}},
             "f:ownerReferences": {"k:{\"uid\":\"11111111-2222-4333-8444-555555555555\"}": {}}},
             "f:spec": {"f:containers": {format!("k:{{\"name\":\"{container}\"}}"): {
                 "f:env": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {"f:limits": {"f:memory": {}}},
                 "f:terminationMessagePath": {}, "f:volumeMounts": {}}},
                 "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:volumes": {}}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-27T09:00:05Z",
         "fieldsType": "FieldsV1", "subresource": "status",
         "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:startTime": {}}}}
    ]);
    let c = &mut pod["spec"]["containers"][0];
    c["env"] = json!(env);
    c["imagePullPolicy"] = json!("IfNotPresent");
    c["ports"] = json!([{"containerPort": 8080, "protocol": "TCP", "name": "http"}]);
    c["volumeMounts"] = json!([
        {"name": "config", "mountPath": "/etc/app"},
        {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]);
    c["livenessProbe"] = json!({"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
        "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3});
    c["readinessProbe"] = c["livenessProbe"].clone();
    c["terminationMessagePath"] = json!("/dev/termination-log");
    c["terminationMessagePolicy"] = json!("File");
    let spec = &mut pod["spec"];
    spec["volumes"] = json!([
        {"name": "config", "configMap": {"name": format!("{name}-config"), "defaultMode": 420}},
        {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]);
    spec["dnsPolicy"] = json!("ClusterFirst");
    spec["restartPolicy"] = json!("Always");
    spec["schedulerName"] = json!("default-scheduler");
    spec["serviceAccountName"] = json!("default");
    spec["terminationGracePeriodSeconds"] = json!(30);
    spec["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
    let st = &mut pod["status"];
    st["conditions"] = json!([
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-11-27T09:00:02Z"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-27T09:00:00Z"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-27T09:00:05Z"},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-27T09:00:05Z"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-27T09:00:00Z"}]);
    st["hostIP"] = json!("10.0.0.12");
    st["podIP"] = json!("10.244.1.17");
    st["podIPs"] = json!([{"ip": "10.244.1.17"}]);
    st["qosClass"] = json!("Burstable");
    st["startTime"] = json!("2026-11-27T09:00:00Z");
    pod
}
