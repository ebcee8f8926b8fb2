//! `run`'s accessor: the pod `run` created, whose containers it registers
//! itself as it creates their cgroups.
use std::collections::HashMap;

use super::{Container, Learned, PodAccessor};

#[derive(Debug, Default)]
pub(crate) struct FixedPod {
    containers: HashMap<u64, Container>,
}

impl FixedPod {
    /// Registers the container whose memory cgroup is `id`.
    pub(crate) fn add(&mut self, id: u64, c: Container) {
        self.containers.insert(id, c);
    }
}

impl PodAccessor for FixedPod {
    fn container(&mut self, id: u64) -> Option<&Container> {
        self.containers.get(&id)
    }

    fn learn(&mut self, id: u64, _path: &str, _comm: &str) -> Learned {
        if self.containers.contains_key(&id) {
            Learned::Container
        } else {
            Learned::Other
        }
    }

    fn is_ignored(&self, _id: u64) -> bool {
        false
    }

    fn is_pod_root(&self, _path: &str) -> bool {
        false
    }

    fn forget(&mut self, id: u64) {
        self.containers.remove(&id);
    }
}
