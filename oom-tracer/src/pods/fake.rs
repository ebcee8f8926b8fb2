//! A [`PodAccessor`] for tests: containers by cgroup id, set by the test.
use std::collections::{HashMap, HashSet};

use super::{Container, Learned, PodAccessor};
use crate::schema::{ContainerRef, PodRef};

#[derive(Debug, Default)]
pub(crate) struct FakePods {
    pub containers: HashMap<u64, Container>,
    pub ignored: HashSet<u64>,
    pub roots: Vec<String>,
    /// Every `learn` call: (id, path, comm).
    pub learnt: Vec<(u64, String, String)>,
    /// Containers whose names a source has not given yet.
    pub unnamed: HashSet<u64>,
    /// What the sources answer at the next `poll`: containers, named.
    pub answers: Vec<(u64, Container)>,
}

impl PodAccessor for FakePods {
    fn container(&mut self, id: u64) -> Option<&Container> {
        self.containers.get(&id)
    }

    fn learn(&mut self, id: u64, path: &str, comm: &str) -> Learned {
        self.learnt.push((id, path.to_owned(), comm.to_owned()));
        if self.ignored.contains(&id) {
            Learned::Ignored
        } else if self.containers.contains_key(&id) {
            Learned::Container
        } else {
            Learned::Other
        }
    }

    fn names_pending(&self, id: u64) -> bool {
        self.unnamed.contains(&id)
    }

    fn poll(&mut self) -> Vec<u64> {
        let mut named = Vec::new();
        for (id, c) in self.answers.drain(..) {
            self.containers.insert(id, c);
            self.unnamed.remove(&id);
            named.push(id);
        }
        named
    }

    fn is_ignored(&self, id: u64) -> bool {
        self.ignored.contains(&id)
    }

    fn is_pod_root(&self, path: &str) -> bool {
        self.roots.iter().any(|r| r == path)
    }

    fn forget(&mut self, id: u64) {
        self.containers.remove(&id);
    }
}

/// The `stress` container of pod `default/oom-example` (uid `u`) after
/// `restarts` restarts: cgroup `/kubepods/podu/c{restarts}`, under the pod
/// cgroup `pod_cgroup_id`, limit 50Mi.
pub(crate) fn example_container(restarts: u32, pod_cgroup_id: u64) -> Container {
    Container {
        pod: PodRef {
            namespace: Some("default".into()),
            name: Some("oom-example".into()),
            uid: "u".into(),
        },
        container: ContainerRef {
            name: Some("stress".into()),
            id: format!("c{restarts}"),
            restart_count: Some(restarts),
        },
        path: format!("/kubepods/podu/c{restarts}"),
        pod_cgroup_id,
        limit_bytes: Some(50 << 20),
        pod_limit_bytes: None,
        command: vec![],
    }
}

/// [`example_container`] as the cgroup path alone tells it: pod uid and
/// container id, no names.
pub(crate) fn unnamed_container(restarts: u32, pod_cgroup_id: u64) -> Container {
    let mut c = example_container(restarts, pod_cgroup_id);
    c.pod.namespace = None;
    c.pod.name = None;
    c.container.name = None;
    c.container.restart_count = None;
    c
}
