//! The agent's accessor: every pod of the node. A cgroup is a container
//! when its path says so (`kubepath`); the names come from the container
//! runtime (CRI labels) and the Kubernetes API, either of which may be
//! missing or down: records then carry the uid and id from the path and
//! null names, and names are filled in as soon as a source knows them.
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use super::{
    Container, Learned, PodAccessor,
    cri::{Cri, Snapshot},
    kube::KubeSource,
    same_uid,
};
use crate::{
    cgroup::{MemoryHierarchy, cgroup_id},
    kubepath::{self, Kind},
    schema::{ContainerRef, PodRef},
};

/// Minimum time between two CRI listings.
const CRI_REFRESH: Duration = Duration::from_millis(500);
/// A container new to us is listed at once unless the last listing is this fresh.
const CRI_REFRESH_NEW: Duration = Duration::from_millis(20);

/// cgroup directory names that root the kubelet's pods.
pub(crate) fn is_kubepods_root(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    matches!(
        last,
        "kubepods" | "kubepods.slice" | "kubelet-kubepods.slice"
    )
}

/// Whether an exec in a container's cgroup is the runtime's own init
/// rather than the container's first process. runc's `runc init` protects
/// itself by re-executing a sealed copy of its binary (`fexecve`, so the
/// new comm is the fd number, or `memfd:…`), and now and then it does so
/// after runc put it into the container's cgroup; it then exits 0 as
/// `runc:[0:PARENT]`. That process must not become the container's main one.
fn is_runtime_init(comm: &str) -> bool {
    comm.starts_with("runc")
        || comm.starts_with("memfd:")
        || (!comm.is_empty() && comm.bytes().all(|b| b.is_ascii_digit()))
}

/// Up/down state of a source, logging each transition once.
#[derive(Debug, Default)]
struct SourceState {
    down_since: Option<Instant>,
}

impl SourceState {
    fn ok(&mut self, what: &str) {
        if let Some(t) = self.down_since.take() {
            tracing::info!("{what} recovered after {:.1}s", t.elapsed().as_secs_f64());
        }
    }

    fn failed(&mut self, what: &str, e: &dyn std::error::Error) {
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                "{what} unavailable, records lack its metadata until it is back: {}",
                crate::errors::chain(e)
            );
        }
    }
}

pub(crate) struct NodePods {
    hierarchy: MemoryHierarchy,
    cri: Option<Cri>,
    cri_state: SourceState,
    snapshot: Snapshot,
    last_listing: Option<Instant>,
    kube: Option<KubeSource>,
    known: HashMap<u64, Container>,
    ignored: HashSet<u64>,
}

impl NodePods {
    pub(crate) fn new(
        hierarchy: MemoryHierarchy,
        cri: Option<Cri>,
        kube: Option<KubeSource>,
    ) -> Self {
        Self {
            hierarchy,
            cri,
            cri_state: SourceState::default(),
            snapshot: Snapshot::default(),
            last_listing: None,
            kube,
            known: HashMap::new(),
            ignored: HashSet::new(),
        }
    }

    pub(crate) fn has_cri(&self) -> bool {
        self.cri.is_some()
    }

    pub(crate) fn has_kube(&self) -> bool {
        self.kube.is_some()
    }

    /// Re-lists the runtime's sandboxes and containers unless the last
    /// listing is younger than `min_age`.
    async fn list(&mut self, min_age: Duration) {
        let Some(c) = self.cri.as_mut() else { return };
        if self.last_listing.is_some_and(|t| t.elapsed() < min_age) {
            return;
        }
        self.last_listing = Some(Instant::now());
        let what = format!("CRI source ({})", c.socket().display());
        match c.snapshot().await {
            Ok(s) => {
                self.snapshot = s;
                self.cri_state.ok(&what);
            }
            Err(e) => self.cri_state.failed(&what, &e),
        }
    }

    /// Whether the runtime knows container or sandbox `id`.
    fn runtime_knows(&self, id: &str) -> bool {
        self.snapshot.sandboxes.contains_key(id) || self.snapshot.containers.contains_key(id)
    }

    /// Everything the sources know about container `id` of pod `pod_uid`.
    fn identity(&self, pod_uid: &str, id: &str) -> (PodRef, ContainerRef) {
        let (mut pod, mut ctr) = self
            .snapshot
            .containers
            .get(id)
            .cloned()
            .unwrap_or_else(|| {
                let pod = self
                    .snapshot
                    .sandboxes
                    .values()
                    .find(|p| same_uid(&p.uid, pod_uid))
                    .cloned();
                let pod = pod.unwrap_or_else(|| PodRef {
                    namespace: None,
                    name: None,
                    uid: pod_uid.to_owned(),
                });
                let ctr = ContainerRef {
                    name: None,
                    id: id.to_owned(),
                    restart_count: None,
                };
                (pod, ctr)
            });
        let complete = pod.namespace.is_some()
            && pod.name.is_some()
            && ctr.name.is_some()
            && ctr.restart_count.is_some();
        // The API only fills what the CRI left empty.
        if !complete && let Some(api) = self.kube.as_ref().and_then(|k| k.pod(pod_uid)) {
            pod.namespace.get_or_insert(api.namespace.clone());
            pod.name.get_or_insert(api.name.clone());
            if let Some(c) = api.containers.get(id) {
                ctr.name.get_or_insert(c.name.clone());
                if ctr.restart_count.is_none() {
                    ctr.restart_count = c.restart_count.and_then(|n| u32::try_from(n).ok());
                }
            }
        }
        if pod.uid.is_empty() || same_uid(&pod.uid, pod_uid) {
            pod.uid = pod_uid.to_owned();
        }
        (pod, ctr)
    }
}

impl PodAccessor for NodePods {
    fn container(&mut self, id: u64) -> Option<&Container> {
        let c = self.known.get(&id)?;
        if c.container.name.is_none() || c.pod.name.is_none() {
            // The API often learns a container after the kernel does.
            let (pod, ctr) = self.identity(&c.pod.uid, &c.container.id);
            if let Some(c) = self.known.get_mut(&id) {
                c.pod = pod;
                c.container = ctr;
            }
        }
        self.known.get(&id)
    }

    async fn learn(&mut self, id: u64, path: &str, comm: &str) -> Learned {
        let Some(k) = kubepath::parse(path) else {
            return Learned::Other;
        };
        let cid = match (k.kind, k.container_id) {
            (Kind::Container, Some(cid)) => cid,
            (Kind::RuntimeHelper, _) => {
                self.ignored.insert(id);
                return Learned::Ignored;
            }
            _ => return Learned::Other,
        };
        if !self.runtime_knows(&cid) {
            self.list(CRI_REFRESH_NEW).await;
        }
        // The pod sandbox runs `pause`: the runtime says so, or its comm does.
        if self.snapshot.sandboxes.contains_key(&cid) || comm == "pause" {
            self.ignored.insert(id);
            return Learned::Ignored;
        }
        if is_runtime_init(comm) {
            return Learned::Other;
        }
        let (pod, container) = self.identity(&k.pod_uid, &cid);
        let pod_path = kubepath::pod_path(path).unwrap_or("").to_owned();
        let c = Container {
            pod,
            container,
            path: path.to_owned(),
            pod_cgroup_id: cgroup_id(&self.hierarchy.dir(&pod_path)).unwrap_or(0),
            limit_bytes: self.hierarchy.limit_of(path),
            pod_limit_bytes: self.hierarchy.limit_of(&pod_path),
            command: Vec::new(),
        };
        self.known.insert(id, c);
        Learned::Container
    }

    fn is_ignored(&self, id: u64) -> bool {
        self.ignored.contains(&id)
    }

    fn is_pod_root(&self, path: &str) -> bool {
        is_kubepods_root(path)
    }

    fn forget(&mut self, id: u64) {
        self.known.remove(&id);
        self.ignored.remove(&id);
    }

    async fn refresh(&mut self) {
        self.list(CRI_REFRESH).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runtimes_init_is_not_a_container_start() {
        for comm in ["runc:[2:INIT]", "runc", "4", "memfd:runc_clon"] {
            assert!(super::is_runtime_init(comm), "{comm}");
        }
        for comm in ["stress", "pause", "java", "node-4", ""] {
            assert!(!super::is_runtime_init(comm), "{comm}");
        }
    }
}
