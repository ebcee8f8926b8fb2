//! A [`PodAccessor`] for tests: containers by cgroup id, set by the test.
use std::collections::{HashMap, HashSet};

use super::{Container, Learned, PodAccessor};

#[derive(Debug, Default)]
pub(crate) struct FakePods {
    pub containers: HashMap<u64, Container>,
    pub ignored: HashSet<u64>,
    pub roots: Vec<String>,
    /// Every `learn` call: (id, path, comm).
    pub learnt: Vec<(u64, String, String)>,
}

impl PodAccessor for FakePods {
    fn container(&mut self, id: u64) -> Option<&Container> {
        self.containers.get(&id)
    }

    async fn learn(&mut self, id: u64, path: &str, comm: &str) -> Learned {
        self.learnt.push((id, path.to_owned(), comm.to_owned()));
        if self.ignored.contains(&id) {
            Learned::Ignored
        } else if self.containers.contains_key(&id) {
            Learned::Container
        } else {
            Learned::Other
        }
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

    async fn refresh(&mut self) {}
}
