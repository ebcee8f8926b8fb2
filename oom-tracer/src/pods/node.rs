//! The agent's accessor: every pod of the node. A cgroup is a container
//! when its path says so (`kubepath`); the names come from the container
//! runtime (CRI labels) and the Kubernetes API, either of which may be
//! missing or down: records then carry the uid and id from the path and
//! null names, and names are filled in as soon as a source knows them.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    Container, Learned, PodAccessor, cri::Snapshot, kube::KubeSource, lister::CriLister, same_uid,
};
use crate::{
    cgroup::{MemoryHierarchy, cgroup_id},
    kubepath::{self, Kind},
    schema::{ContainerRef, PodRef},
};

/// How long a container whose cgroup is gone, still without names, is
/// kept so that names coming later name it (its `restart` waits for them).
const RETIRED_FOR: Duration = Duration::from_secs(600);
/// How many such containers are kept at most (the oldest goes).
const RETIRED_MAX: usize = 256;

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

pub(crate) struct NodePods {
    hierarchy: MemoryHierarchy,
    /// The runtime, listed on a task of its own.
    cri: Option<CriLister>,
    /// Its last answer.
    snapshot: Arc<Snapshot>,
    kube: Option<KubeSource>,
    /// Which sources answered at least once: (CRI, API).
    answered: (bool, bool),
    known: HashMap<u64, Container>,
    /// Containers forgotten (cgroup gone) before they were named, and when.
    retired: VecDeque<(u64, Instant, Container)>,
    ignored: HashSet<u64>,
}

impl NodePods {
    /// Starts listing the runtime (`cri`) beside the caller; needs a
    /// tokio runtime.
    pub(crate) fn new(
        hierarchy: MemoryHierarchy,
        cri: Option<super::cri::Cri>,
        kube: Option<KubeSource>,
    ) -> Self {
        Self {
            hierarchy,
            cri: cri.map(CriLister::spawn),
            snapshot: Arc::default(),
            kube,
            answered: (false, false),
            known: HashMap::new(),
            retired: VecDeque::new(),
            ignored: HashSet::new(),
        }
    }

    pub(crate) fn has_cri(&self) -> bool {
        self.cri.is_some()
    }

    pub(crate) fn has_kube(&self) -> bool {
        self.kube.is_some()
    }

    /// Asks the runtime for a listing (answered beside the drain).
    fn ask_runtime(&self) {
        if let Some(c) = &self.cri {
            c.request();
        }
    }

    /// Whether the names of `c` are all there.
    fn named(c: &Container) -> bool {
        c.pod.name.is_some() && c.pod.namespace.is_some() && c.container.name.is_some()
    }

    /// The container in cgroup `id`, known or retired.
    fn entry(&mut self, id: u64) -> Option<&mut Container> {
        if self.known.contains_key(&id) {
            return self.known.get_mut(&id);
        }
        self.retired
            .iter_mut()
            .find(|r| r.0 == id)
            .map(|r| &mut r.2)
    }

    /// Drops retired containers kept too long or beyond the bound.
    fn prune_retired(&mut self) {
        self.retired.retain(|r| r.1.elapsed() < RETIRED_FOR);
        while self.retired.len() > RETIRED_MAX {
            self.retired.pop_front();
        }
    }

    /// Fills in what the sources know now about every container still
    /// without names (retired ones too: a runtime's listing includes
    /// exited containers); returns those that have them now.
    fn rename(&mut self) -> Vec<u64> {
        self.prune_retired();
        let retired = self.retired.iter().map(|r| (r.0, &r.2));
        let unnamed: Vec<(u64, String, String)> = self
            .known
            .iter()
            .map(|(&id, c)| (id, c))
            .chain(retired)
            .filter(|(_, c)| !Self::named(c))
            .map(|(id, c)| (id, c.pod.uid.clone(), c.container.id.clone()))
            .collect();
        let mut named = Vec::new();
        for (id, uid, cid) in unnamed {
            if self.snapshot.sandboxes.contains_key(&cid) {
                // Taken for a container before the runtime said otherwise.
                if self.known.remove(&id).is_some() {
                    self.ignored.insert(id);
                }
                self.retired.retain(|r| r.0 != id);
                continue;
            }
            let (pod, ctr) = self.identity(&uid, &cid);
            if let Some(c) = self.entry(id) {
                (c.pod, c.container) = (pod, ctr);
                if Self::named(c) {
                    named.push(id);
                }
            }
        }
        named
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
        let c = self.entry(id)?;
        if c.container.name.is_none() || c.pod.name.is_none() {
            // The API often learns a container after the kernel does.
            let (uid, cid) = (c.pod.uid.clone(), c.container.id.clone());
            let (pod, ctr) = self.identity(&uid, &cid);
            if let Some(c) = self.entry(id) {
                c.pod = pod;
                c.container = ctr;
            }
        }
        self.entry(id).map(|c| &*c)
    }

    fn learn(&mut self, id: u64, path: &str, comm: &str) -> Learned {
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
            // Learnt from the path now; the names follow (`poll`).
            self.ask_runtime();
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
        if let Some(c) = self.known.remove(&id)
            && !Self::named(&c)
        {
            self.retired.push_back((id, Instant::now(), c));
            self.prune_retired();
        }
        self.ignored.remove(&id);
    }

    fn names_pending(&self, id: u64) -> bool {
        (self.cri.is_some() || self.kube.is_some())
            && self.known.get(&id).is_some_and(|c| !Self::named(c))
    }

    fn poll(&mut self) -> Vec<u64> {
        let mut news = false;
        if let Some(s) = self.cri.as_mut().and_then(CriLister::poll) {
            self.snapshot = s;
            (news, self.answered.0) = (true, true);
        }
        if let Some(k) = self.kube.as_mut()
            && k.poll()
        {
            (news, self.answered.1) = (true, true);
        }
        if news { self.rename() } else { Vec::new() }
    }

    fn answered(&self) -> bool {
        (self.cri.is_none() || self.answered.0) && (self.kube.is_none() || self.answered.1)
    }

    async fn changed(&mut self) {
        let cri = async {
            match self.cri.as_mut() {
                Some(c) => c.changed().await,
                None => std::future::pending().await,
            }
        };
        let kube = async {
            match self.kube.as_mut() {
                Some(k) => k.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cri => {}
            () = kube => {}
        }
    }

    fn refresh(&mut self) {
        self.ask_runtime();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIFIED: &str = "25 30 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    const UID: &str = "01234567-89ab-cdef-0123-456789abcdef";

    fn pods() -> NodePods {
        let h = MemoryHierarchy::from_tables(UNIFIED, "", |_| "memory".into()).unwrap();
        NodePods::new(h, None, None)
    }

    fn path(cid: &str) -> String {
        format!("/kubepods/burstable/pod{UID}/{cid}")
    }

    /// The runtime's listing came after the container's cgroup was gone
    /// (a slow runtime): it still names the container, for a while.
    #[test]
    fn names_that_come_after_the_cgroup_is_gone_still_name_it() {
        let mut p = pods();
        let cid = "a".repeat(64);
        assert_eq!(p.learn(7, &path(&cid), "stress"), Learned::Container);
        assert!(p.container(7).unwrap().container.name.is_none());
        p.forget(7);
        let pod = PodRef {
            namespace: Some("team-a".into()),
            name: Some("oom-loop".into()),
            uid: UID.into(),
        };
        let ctr = ContainerRef {
            name: Some("hog".into()),
            id: cid.clone(),
            restart_count: Some(1),
        };
        let mut s = Snapshot::default();
        s.containers.insert(cid, (pod, ctr));
        p.snapshot = Arc::new(s);
        assert_eq!(p.rename(), [7]);
        let c = p.container(7).unwrap();
        assert_eq!(c.container.name.as_deref(), Some("hog"));
        assert_eq!(c.container.restart_count, Some(1));
        assert!(p.rename().is_empty(), "named once");
    }

    #[test]
    fn forgotten_containers_are_kept_within_bounds() {
        let mut p = pods();
        for i in 0..RETIRED_MAX as u64 + 10 {
            let cid = format!("{i:064x}");
            assert_eq!(p.learn(i, &path(&cid), "stress"), Learned::Container);
            p.forget(i);
        }
        assert_eq!(p.retired.len(), RETIRED_MAX);
        assert!(p.container(0).is_none(), "the oldest went");
        assert!(p.container(RETIRED_MAX as u64 + 9).is_some());
        assert!(p.known.is_empty());
    }

    #[test]
    fn the_runtimes_init_is_not_a_container_start() {
        for comm in ["runc:[2:INIT]", "runc", "4", "memfd:runc_clon"] {
            assert!(is_runtime_init(comm), "{comm}");
        }
        for comm in ["stress", "pause", "java", "node-4", ""] {
            assert!(!is_runtime_init(comm), "{comm}");
        }
    }
}
