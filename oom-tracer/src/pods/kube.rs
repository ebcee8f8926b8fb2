//! Pod metadata from the Kubernetes API: a reflector over this node's pods
//! (`spec.nodeName=$NODE_NAME`). It adds what only the API has: labels,
//! owner, memory requests and limits, and the kubelet's view of restarts
//! (`restartCount`, `lastState.terminated.reason`, waiting
//! `CrashLoopBackOff`). kube-rs's watcher retries with back-off while the
//! API server is unreachable; lookups simply miss meanwhile.
use std::collections::BTreeMap;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Config,
    runtime::{WatchStreamExt as _, reflector, watcher},
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum KubeError {
    #[error("no Kubernetes API configuration (not in a cluster, no KUBECONFIG)")]
    NoConfig(#[source] kube::config::InferConfigError),
    #[error("reading kubeconfig {path}")]
    Kubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("building the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// What the API says about one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ApiContainer {
    pub name: String,
    pub restart_count: Option<i32>,
    pub memory_limit: Option<String>,
    pub memory_request: Option<String>,
    /// `lastState.terminated.reason` (e.g. OOMKilled).
    pub last_terminated_reason: Option<String>,
    /// `state.waiting.reason` (e.g. CrashLoopBackOff).
    pub waiting_reason: Option<String>,
}

/// A pod as the agent needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub owner: Option<String>,
    /// Container id (without the `containerd://` scheme) → container.
    pub containers: BTreeMap<String, ApiContainer>,
    /// Every container by name, whether or not it has an id yet.
    pub by_name: BTreeMap<String, ApiContainer>,
}

/// `containerd://abc` → `abc`.
pub(crate) fn strip_scheme(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

pub(crate) fn api_pod(p: &Pod) -> Option<ApiPod> {
    let md = &p.metadata;
    let uid = md.uid.clone()?;
    let mut by_name = BTreeMap::new();
    let mut containers = BTreeMap::new();
    let spec_containers = p
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    for c in spec_containers {
        let res = c.resources.as_ref();
        let q = |m: Option<
            &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >| { m.and_then(|m| m.get("memory")).map(|q| q.0.clone()) };
        by_name.insert(
            c.name.clone(),
            ApiContainer {
                name: c.name.clone(),
                restart_count: None,
                memory_limit: q(res.and_then(|r| r.limits.as_ref())),
                memory_request: q(res.and_then(|r| r.requests.as_ref())),
                last_terminated_reason: None,
                waiting_reason: None,
            },
        );
    }
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    for st in statuses {
        let entry = by_name
            .entry(st.name.clone())
            .or_insert_with(|| ApiContainer {
                name: st.name.clone(),
                restart_count: None,
                memory_limit: None,
                memory_request: None,
                last_terminated_reason: None,
                waiting_reason: None,
            });
        entry.restart_count = Some(st.restart_count);
        entry.last_terminated_reason = st
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.clone());
        entry.waiting_reason = st
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone());
        if let Some(id) = &st.container_id {
            containers.insert(strip_scheme(id).to_owned(), entry.clone());
        }
    }
    Some(ApiPod {
        namespace: md.namespace.clone().unwrap_or_default(),
        name: md.name.clone().unwrap_or_default(),
        uid,
        labels: md.labels.clone().unwrap_or_default(),
        owner: md
            .owner_references
            .as_ref()
            .and_then(|o| o.first())
            .map(|o| format!("{}/{}", o.kind, o.name)),
        containers,
        by_name,
    })
}

/// Drops what [`api_pod`] never reads, before the reflector stores the
/// pod: managed fields, annotations, the spec but the containers' names and
/// memory resources, the status but the containers' restart counts, ids and
/// reasons. A node's pods then cost the agent about a kilobyte each.
pub(crate) fn strip(p: &mut Pod) {
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, PodSpec, PodStatus, ResourceRequirements,
    };
    let md = &mut p.metadata;
    md.annotations = None;
    md.managed_fields = None;
    md.finalizers = None;
    md.generate_name = None;
    md.creation_timestamp = None;
    md.deletion_timestamp = None;
    md.deletion_grace_period_seconds = None;
    md.generation = None;
    if let Some(owners) = md.owner_references.as_mut() {
        owners.truncate(1);
        for o in owners.iter_mut() {
            o.api_version = String::new();
            o.uid = String::new();
            o.block_owner_deletion = None;
            o.controller = None;
        }
    }
    let memory =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.and_then(|m| m.get("memory"))
                .map(|q| BTreeMap::from([("memory".to_owned(), q.clone())]))
        };
    if let Some(spec) = p.spec.take() {
        let containers = spec
            .containers
            .into_iter()
            .map(|c| Container {
                resources: c.resources.map(|r| ResourceRequirements {
                    limits: memory(r.limits.as_ref()),
                    requests: memory(r.requests.as_ref()),
                    ..Default::default()
                }),
                name: c.name,
                ..Default::default()
            })
            .collect();
        p.spec = Some(PodSpec {
            containers,
            ..Default::default()
        });
    }
    if let Some(status) = p.status.take() {
        let statuses = status.container_statuses.map(|v| {
            v.into_iter()
                .map(|st| ContainerStatus {
                    name: st.name,
                    restart_count: st.restart_count,
                    container_id: st.container_id,
                    state: st.state.and_then(|s| s.waiting).map(|w| ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: w.reason,
                            message: None,
                        }),
                        ..Default::default()
                    }),
                    last_state: st
                        .last_state
                        .and_then(|s| s.terminated)
                        .map(|t| ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code: t.exit_code,
                                reason: t.reason,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    ..Default::default()
                })
                .collect()
        });
        p.status = Some(PodStatus {
            container_statuses: statuses,
            ..Default::default()
        });
    }
}

/// A running reflector over this node's pods.
pub(crate) struct KubeSource {
    store: reflector::Store<Pod>,
    client: Client,
    /// Bumped on every watcher event: the store may know more.
    updates: tokio::sync::watch::Receiver<u64>,
    /// [`KubeSource::changed`] saw a change that `poll` has not reported.
    fresh: bool,
    _task: tokio::task::JoinHandle<()>,
}

impl KubeSource {
    /// Starts the reflector. `kubeconfig`: a file, else in-cluster config
    /// or $KUBECONFIG (kube's usual inference).
    pub(crate) async fn start(
        node: Option<&str>,
        kubeconfig: Option<&std::path::Path>,
    ) -> Result<Self, KubeError> {
        let config = match kubeconfig {
            Some(path) => {
                let err = |source| KubeError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                };
                let kc = kube::config::Kubeconfig::read_from(path).map_err(err)?;
                Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(err)?
            }
            None => Config::infer().await.map_err(KubeError::NoConfig)?,
        };
        let client = Client::try_from(config).map_err(KubeError::Client)?;
        let pods: Api<Pod> = Api::all(client.clone());
        let mut wc = watcher::Config::default();
        if let Some(n) = node {
            wc = wc.fields(&format!("spec.nodeName={n}"));
        }
        let (store, writer) = reflector::store();
        // Only this node's pods are listed (the field selector), and each is
        // stripped to what the agent reads before the store keeps it.
        // Every watcher event counts as the source answering, the (re)list's
        // Init and InitDone too: a node without pods is a source that works.
        let stream = reflector(writer, watcher(pods, wc).modify(strip)).default_backoff();
        let (tx, updates) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            let mut failing = false;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => {
                        tx.send_modify(|n| *n += 1);
                        if failing {
                            tracing::info!("Kubernetes API source recovered");
                            failing = false;
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(
                                "Kubernetes API source degraded (retrying with back-off): {e}"
                            );
                            failing = true;
                        }
                    }
                }
            }
        });
        Ok(Self {
            store,
            client,
            updates,
            fresh: false,
            _task: task,
        })
    }

    /// Whether the store changed since the last call.
    pub(crate) fn poll(&mut self) -> bool {
        let changed = self.updates.has_changed().unwrap_or(false);
        self.updates.mark_unchanged();
        std::mem::take(&mut self.fresh) || changed
    }

    /// Completes when the store changed (never, once the reflector is gone).
    pub(crate) async fn changed(&mut self) {
        // `changed` marks the change seen: `poll` must still report it.
        if self.updates.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.fresh = true;
    }

    /// The API client, for the Events sink.
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn pod(&self, uid: &str) -> Option<ApiPod> {
        // Found in place: no copy of the store per lookup.
        self.store
            .find(|p| {
                p.metadata
                    .uid
                    .as_deref()
                    .is_some_and(|u| super::same_uid(u, uid))
            })
            .and_then(|p| api_pod(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_json_to_api_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "oom-example", "namespace": "default", "uid": "6b3b4a5e-1f2d-4c3b-9a8e-0d1c2b3a4f5e",
                          "labels": {"app": "x"},
                          "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs-1", "uid": "u"}]},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "stress", "image": "s", "resources": {"limits": {"memory": "50Mi"}, "requests": {"memory": "50Mi"}}},
                {"name": "sidecar", "image": "s"}]},
            "status": {"containerStatuses": [
                {"name": "stress", "image": "s", "imageID": "", "ready": false, "restartCount": 4,
                 "containerID": "containerd://abc123",
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        }))
        .unwrap();
        let p = api_pod(&pod).unwrap();
        assert_eq!(p.name, "oom-example");
        assert_eq!(p.owner.as_deref(), Some("ReplicaSet/rs-1"));
        let c = &p.containers["abc123"];
        assert_eq!(c.name, "stress");
        assert_eq!(c.restart_count, Some(4));
        assert_eq!(c.memory_limit.as_deref(), Some("50Mi"));
        assert_eq!(c.last_terminated_reason.as_deref(), Some("OOMKilled"));
        assert_eq!(c.waiting_reason.as_deref(), Some("CrashLoopBackOff"));
        assert!(p.by_name.contains_key("sidecar"));
        assert_eq!(strip_scheme("cri-o://x"), "x");
        // Stripping keeps everything the agent reads.
        let mut stripped = pod.clone();
        strip(&mut stripped);
        assert_eq!(api_pod(&stripped), Some(p));
        assert!(stripped.spec.unwrap().containers[0].image.is_none());
        assert_eq!(strip_scheme("x"), "x");
    }
}
