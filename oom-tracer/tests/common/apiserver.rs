//! A stand-in for the Kubernetes API server, for the pod list/watch the
//! agent's reflector does: real Pod JSON, resourceVersions, `watch=true`
//! streams from a resourceVersion, and `fieldSelector=spec.nodeName=...`.
//! No kube-apiserver can be had on the test machine; this serves the same
//! wire format on 127.0.0.1 (plain HTTP), or, as a pod's in-cluster config
//! needs it, over TLS on any address with a bearer token it checks
//! ([`ApiServer::start_tls`]).
#![allow(dead_code)]

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
    pub(crate) fn upsert(&self, mut pod: Value) {
        let (m, cv) = &*self.state;
        let mut s = m.lock().unwrap();
        s.rv += 1;
        pod["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let uid = pod["metadata"]["uid"].clone();
        let exists = s.events.iter().any(|(_, _, p)| p["metadata"]["uid"] == uid);
        let rv = s.rv;
        s.events
            .push((rv, if exists { "MODIFIED" } else { "ADDED" }, pod));
        cv.notify_all();
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
    fn pods(s: &State) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for (_, _, p) in &s.events {
            out.retain(|q| q["metadata"]["uid"] != p["metadata"]["uid"]);
            out.push(p.clone());
        }
        out
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
                let new: Vec<(u64, &'static str, Value)> = s
                    .events
                    .iter()
                    .filter(|(rv, _, p)| *rv > sent && selected(p))
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
        let items: Vec<Value> = ApiServer::pods(&s)
            .into_iter()
            .filter(|p| selected(p))
            .collect();
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
