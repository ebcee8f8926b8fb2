//! Container lifecycles as the agent sees them from the kernel: a container
//! starts with the first exec in its cgroup (that process is its main
//! process), ends when the main process exits, and a new container of the
//! same pod and name is a restart.
use std::collections::HashMap;

use crate::{
    kubepath::{self, Kind},
    meta::ContainerInfo,
    record::{ContainerRef, PodRef},
};

/// A container cgroup the agent tracks.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub cgroup_id: u64,
    pub path: String,
    pub info: ContainerInfo,
    /// Host pid of the main process (first exec), 0 if not known.
    pub main_pid: u32,
    pub started_ns: u64,
    pub exited: bool,
}

impl Tracked {
    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.info.pod.namespace.clone(),
            name: self.info.pod.name.clone(),
            uid: self.info.pod.uid.clone(),
        }
    }

    pub fn container_ref(&self) -> ContainerRef {
        ContainerRef {
            name: self.info.name.clone(),
            id: self.info.id.clone(),
            restart_count: self.info.restart_count,
        }
    }
}

/// What a cgroup is to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupRole {
    /// A Kubernetes container (pod uid, container id).
    Container { pod_uid: String, id: String },
    /// A pod sandbox (pause) or a runtime helper: not reported.
    Skip,
    /// Not a Kubernetes container cgroup.
    Other,
}

/// Classifies a cgroup path (the runtime's sandbox list is checked by the caller).
pub fn role(path: &str) -> CgroupRole {
    match kubepath::parse(path) {
        Some(k) => match (k.kind, k.container_id) {
            (Kind::Container, Some(id)) => CgroupRole::Container {
                pod_uid: k.pod_uid,
                id,
            },
            (Kind::RuntimeHelper, _) => CgroupRole::Skip,
            _ => CgroupRole::Other,
        },
        None => CgroupRole::Other,
    }
}

/// Last exit per (pod uid, container name): when, and why.
#[derive(Debug, Clone)]
pub struct LastExit {
    pub at_ns: u64,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Containers {
    pub by_cgroup: HashMap<u64, Tracked>,
    /// Cgroups known to be sandboxes or helpers.
    pub skipped: HashMap<u64, ()>,
    pub last_exit: HashMap<(String, String), LastExit>,
}

impl Containers {
    pub fn get(&self, cgroup_id: u64) -> Option<&Tracked> {
        self.by_cgroup.get(&cgroup_id)
    }

    pub fn is_skipped(&self, cgroup_id: u64) -> bool {
        self.skipped.contains_key(&cgroup_id)
    }

    pub fn skip(&mut self, cgroup_id: u64) {
        self.skipped.insert(cgroup_id, ());
    }

    pub fn track(&mut self, t: Tracked) {
        self.by_cgroup.insert(t.cgroup_id, t);
    }

    /// The container whose main process is `pid`, if any.
    pub fn by_main_pid(&mut self, cgroup_id: u64, pid: u32) -> Option<&mut Tracked> {
        self.by_cgroup
            .get_mut(&cgroup_id)
            .filter(|t| t.main_pid == pid && !t.exited)
    }

    /// Records an exit for restart detection.
    pub fn exited(&mut self, pod_uid: &str, name: Option<&str>, at_ns: u64, reason: &str) {
        if let Some(n) = name {
            self.last_exit.insert(
                (pod_uid.to_owned(), n.to_owned()),
                LastExit {
                    at_ns,
                    reason: reason.to_owned(),
                },
            );
        }
    }

    /// The previous exit of the same pod's container with this name: a
    /// new container of that name is its restart.
    pub fn take_previous(&mut self, pod_uid: &str, name: Option<&str>) -> Option<LastExit> {
        self.last_exit
            .remove(&(pod_uid.to_owned(), name?.to_owned()))
    }

    /// Forgets a container whose cgroup is gone.
    pub fn removed(&mut self, cgroup_id: u64) {
        self.by_cgroup.remove(&cgroup_id);
        self.skipped.remove(&cgroup_id);
    }
}
