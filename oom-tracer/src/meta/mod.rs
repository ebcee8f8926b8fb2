//! Pod and container metadata for kernel records: from the container
//! runtime (CRI, `cri.rs`) and the Kubernetes API (`kube.rs`). Each source
//! is optional; a missing one degrades the records (null names), it never
//! stops the agent, and it is retried.
use std::time::{Duration, Instant};

pub mod cri;
pub mod kube;

/// Whether two pod uids are the same pod. Static pods have a 32-hex hash
/// as uid that the cgroup path parser writes in dashed form.
pub fn same_uid(a: &str, b: &str) -> bool {
    a.len() >= 32
        && a.bytes()
            .filter(|&c| c != b'-')
            .eq(b.bytes().filter(|&c| c != b'-'))
}

/// A pod's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: String,
}

/// A container's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: Option<String>,
    pub restart_count: Option<u32>,
    pub pod: PodInfo,
}

/// Up/down state of a source, logging each transition once.
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

#[derive(Debug, Default)]
struct SourceState {
    down_since: Option<Instant>,
    pub failures: u64,
}

impl SourceState {
    fn ok(&mut self, what: &str) {
        if let Some(t) = self.down_since.take() {
            tracing::info!("{what} recovered after {:.1}s", t.elapsed().as_secs_f64());
        }
    }

    fn failed(&mut self, what: &str, e: &dyn std::error::Error) {
        self.failures += 1;
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                "{what} unavailable, records lack its metadata until it is back: {}",
                crate::bpf::hooks::error_chain(e)
            );
        }
    }
}

/// Minimum time between two CRI listings.
const CRI_REFRESH: Duration = Duration::from_millis(500);

pub struct Metadata {
    cri: Option<cri::Cri>,
    cri_state: SourceState,
    snapshot: cri::Snapshot,
    last_refresh: Option<Instant>,
    kube: Option<kube::KubeSource>,
}

impl Metadata {
    pub fn new(cri: Option<cri::Cri>, kube: Option<kube::KubeSource>) -> Self {
        Self {
            cri,
            cri_state: SourceState::default(),
            snapshot: cri::Snapshot::default(),
            last_refresh: None,
            kube,
        }
    }

    pub fn has_cri(&self) -> bool {
        self.cri.is_some()
    }

    pub fn has_kube(&self) -> bool {
        self.kube.is_some()
    }

    /// Re-lists the runtime's containers, at most every 500 ms.
    pub async fn refresh(&mut self) {
        self.refresh_within(CRI_REFRESH).await;
    }

    /// Re-lists the runtime's containers because `id` is new to us: a
    /// container that just started is listed already, so ask again unless
    /// the last listing is very fresh.
    pub async fn refresh_for(&mut self, id: &str) {
        if !self.knows(id) {
            self.refresh_within(Duration::from_millis(20)).await;
        }
    }

    async fn refresh_within(&mut self, min_age: Duration) {
        let Some(c) = self.cri.as_mut() else { return };
        if self.last_refresh.is_some_and(|t| t.elapsed() < min_age) {
            return;
        }
        self.last_refresh = Some(Instant::now());
        match c.snapshot().await {
            Ok(s) => {
                self.snapshot = s;
                let what = format!("CRI source ({})", c.socket().display());
                self.cri_state.ok(&what);
            }
            Err(e) => {
                let what = format!("CRI source ({})", c.socket().display());
                self.cri_state.failed(&what, &e);
            }
        }
    }

    /// Whether `id` is a pod sandbox (pause) container.
    pub fn is_sandbox(&self, id: &str) -> bool {
        self.snapshot.sandboxes.contains_key(id)
    }

    /// Whether the runtime knows `id` at all (as container or sandbox).
    pub fn knows(&self, id: &str) -> bool {
        self.is_sandbox(id) || self.snapshot.containers.contains_key(id)
    }

    /// Everything known about container `id` of pod `pod_uid`.
    pub fn container(&self, pod_uid: &str, id: &str) -> ContainerInfo {
        let mut info = self
            .snapshot
            .containers
            .get(id)
            .cloned()
            .unwrap_or_else(|| ContainerInfo {
                id: id.to_owned(),
                name: None,
                restart_count: None,
                pod: self.pod_from_cri(pod_uid),
            });
        if let Some(api) = self.kube.as_ref().and_then(|k| k.pod(pod_uid)) {
            info.pod.namespace.get_or_insert(api.namespace.clone());
            info.pod.name.get_or_insert(api.name.clone());
            if let Some(c) = api.containers.get(id) {
                info.name.get_or_insert(c.name.clone());
                if info.restart_count.is_none() {
                    info.restart_count = c.restart_count.and_then(|n| u32::try_from(n).ok());
                }
            }
        }
        if info.pod.uid.is_empty() || same_uid(&info.pod.uid, pod_uid) {
            info.pod.uid = pod_uid.to_owned();
        }
        info
    }

    fn pod_from_cri(&self, uid: &str) -> PodInfo {
        self.snapshot
            .sandboxes
            .values()
            .find(|p| same_uid(&p.uid, uid))
            .cloned()
            .unwrap_or_else(|| PodInfo {
                uid: uid.to_owned(),
                ..Default::default()
            })
    }
}
