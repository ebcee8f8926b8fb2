//! Enrichment: who a memory cgroup belongs to. The pipeline asks a
//! [`PodAccessor`] (Tetragon's `PodAccessor` is the model) about every
//! cgroup it sees; the modes differ only in which accessor they hand it:
//!
//! - `run`: [`fixed::FixedPod`], the one pod `run` created itself;
//! - `agent`: [`node::NodePods`], every pod of the node, named from the
//!   cgroup path (`kubepath`), the container runtime (`cri.rs`) and the
//!   Kubernetes API (`kube.rs`);
//! - tests: `fake::FakePods`.
use crate::schema::{ContainerRef, PodRef};

#[cfg(feature = "agent")]
pub(crate) mod cri;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod fixed;
#[cfg(feature = "agent")]
pub(crate) mod kube;
#[cfg(feature = "agent")]
pub(crate) mod lister;
#[cfg(feature = "agent")]
pub(crate) mod node;

/// What records of a container's cgroup are enriched with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Container {
    pub pod: PodRef,
    pub container: ContainerRef,
    /// The container's memory cgroup, relative to the hierarchy's root.
    pub path: String,
    /// The pod's memory cgroup id (0 if unknown): an OOM there is a pod-level one.
    pub pod_cgroup_id: u64,
    pub limit_bytes: Option<u64>,
    pub pod_limit_bytes: Option<u64>,
    /// The workload's command (known in `run` only).
    pub command: Vec<String>,
}

/// What a cgroup turned out to be when it was first seen with a process in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A container: [`PodAccessor::container`] now answers for it.
    Container,
    /// A pod sandbox (pause) or a runtime helper: its records are dropped.
    #[cfg_attr(
        all(not(feature = "agent"), not(test)),
        expect(dead_code, reason = "the agent's")
    )]
    Ignored,
    /// Not a container (a node service, a cgroup outside Kubernetes): its
    /// records are reported without pod and container.
    Other,
}

/// The one lookup interface of enrichment. Every method answers from what
/// the accessor knows now: none waits on a runtime or an API server (the
/// pipeline drains the ring buffer on the same task). Sources that must be
/// asked are asked beside it, and their answers picked up by
/// [`PodAccessor::poll`].
pub(crate) trait PodAccessor {
    /// The container in memory cgroup `id`, if one is known. Metadata a
    /// source learnt since the container was first seen (names the API
    /// writes only after the start) is filled in here.
    fn container(&mut self, id: u64) -> Option<&Container>;

    /// The cgroup `id` at `path` was seen for the first time with a
    /// process in it (`comm`): its first exec, or a scan at startup.
    /// Answers at once, from the path and what the sources said so far;
    /// asks them about what it does not know yet.
    fn learn(&mut self, id: u64, path: &str, comm: &str) -> Learned;

    /// Whether the container in `id` still lacks names that a source may
    /// give (the pipeline holds its first records back a little).
    fn names_pending(&self, _id: u64) -> bool {
        false
    }

    /// Takes in what the sources answered since the last call; returns the
    /// containers whose names are complete now and were not before.
    fn poll(&mut self) -> Vec<u64> {
        Vec::new()
    }

    /// Whether every source answered at least once (the agent's startup
    /// waits a little for that).
    fn answered(&self) -> bool {
        true
    }

    /// Completes when a source has news for [`PodAccessor::poll`].
    async fn changed(&mut self) {
        std::future::pending::<()>().await;
    }

    /// Whether records of cgroup `id` are dropped (sandboxes, helpers).
    fn is_ignored(&self, id: u64) -> bool;

    /// Whether pods live under `path` (`kubepods`): the tracer watches it.
    fn is_pod_root(&self, path: &str) -> bool;

    /// The cgroup `id` is gone.
    fn forget(&mut self, id: u64);

    /// Asks the sources to re-read (on the rescan tick); returns at once.
    fn refresh(&mut self) {}
}

/// Whether two pod uids are the same pod. Static pods have a 32-hex hash
/// as uid that the cgroup path parser writes in dashed form.
pub(crate) fn same_uid(a: &str, b: &str) -> bool {
    a.len() >= 32
        && a.bytes()
            .filter(|&c| c != b'-')
            .eq(b.bytes().filter(|&c| c != b'-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn static_pod_uids_match_their_dashed_form() {
        assert!(super::same_uid(
            "0123456789abcdef0123456789abcdef",
            "01234567-89ab-cdef-0123-456789abcdef"
        ));
        assert!(super::same_uid(
            "01234567-89ab-cdef-0123-456789abcdef",
            "01234567-89ab-cdef-0123-456789abcdef"
        ));
        assert!(!super::same_uid(
            "01234567-89ab-cdef-0123-456789abcdee",
            "01234567-89ab-cdef-0123-456789abcdef"
        ));
        assert!(!super::same_uid("", ""));
    }
}
