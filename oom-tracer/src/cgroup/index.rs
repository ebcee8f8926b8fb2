//! cgroup id → path. The kernel reports memcgs by id (the kernfs id, equal
//! to the directory's inode number, in every view); records carry paths of
//! the view (`super`'s doc). Ids are learnt from cgroups oom-tracer
//! creates, from `cgroup_mkdir` events, and by scanning the hierarchy on a
//! miss. Removed cgroups stay resolvable for a while (bounded), so a
//! container whose cgroup is gone still resolves.
use std::{
    collections::{HashMap, VecDeque},
    ops::ControlFlow,
    time::{Duration, Instant},
};

use super::{MemoryHierarchy, cgroup_id};

/// Removed cgroups kept resolvable.
const REMOVED_KEEP: usize = 1024;
/// At most one full scan per this interval.
const SCAN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub(crate) struct CgroupIndex {
    hierarchy: Option<MemoryHierarchy>,
    live: HashMap<u64, String>,
    removed: HashMap<u64, String>,
    removed_order: VecDeque<u64>,
    last_scan: Option<Instant>,
    /// The kernel's full path of the view's root (`/` on a bare node),
    /// once a cgroup's id has been found in the view.
    kernel_root: Option<String>,
    /// Kernel paths of cgroups not found in the view when their event came
    /// (the kernel reports a mkdir a moment before the directory shows):
    /// looked up again on the id's first miss. Bounded.
    deferred: HashMap<u64, String>,
    /// Lookups no source could answer (reported in the `stop` record).
    pub unresolved: u64,
}

impl CgroupIndex {
    pub(crate) fn new(hierarchy: Option<MemoryHierarchy>) -> Self {
        Self {
            hierarchy,
            live: HashMap::new(),
            removed: HashMap::new(),
            removed_order: VecDeque::new(),
            last_scan: None,
            kernel_root: None,
            deferred: HashMap::new(),
            unresolved: 0,
        }
    }

    /// The view's path of cgroup `id`, which the kernel named by its full
    /// path from the hierarchy's root (the cgroup tracepoints do, whatever
    /// the reader's view): the path less the kernel's path of the view's
    /// root. That root is learnt once, by finding the id under one of the
    /// path's suffixes in the view. `None`: outside the view, or not
    /// learnt yet and the cgroup already gone.
    pub(crate) fn view_path(&mut self, id: u64, kernel_path: &str) -> Option<String> {
        let Some(h) = &self.hierarchy else {
            return Some(kernel_path.to_owned());
        };
        if let Some(root) = &self.kernel_root {
            return strip_root(kernel_path, root);
        }
        let parts: Vec<&str> = kernel_path.split('/').filter(|c| !c.is_empty()).collect();
        let (root, view) = (0..=parts.len()).find_map(|skip| {
            let view = format!("/{}", parts[skip..].join("/"));
            (cgroup_id(&h.dir(&view)).ok() == Some(id))
                .then(|| (format!("/{}", parts[..skip].join("/")), view))
        })?;
        if root != "/" {
            tracing::info!(
                "this node's cgroups are {root}/… to the kernel: records name them as the node does, without {root}"
            );
        }
        self.kernel_root = Some(root);
        Some(view)
    }

    /// The view's path of cgroup `id` whose full path the kernel had to
    /// truncate (a node in a container adds its own prefix to the
    /// kubelet's long names): looked for below the deepest directory the
    /// truncated path names whole.
    pub(crate) fn view_path_truncated(&mut self, id: u64, kernel_prefix: &str) -> Option<String> {
        let (h, root) = (self.hierarchy.as_ref()?, self.kernel_root.as_deref()?);
        let view = strip_root(kernel_prefix, root)?;
        let whole = view.rsplit_once('/').map_or("", |(head, _)| head);
        let dir = h.find_below(&h.dir(whole), id)?;
        h.path_of(&dir)
    }

    /// The view's path of a cgroup event's kernel path (cut at
    /// `cut` bytes or not); else kept to be looked up again on a miss.
    pub(crate) fn learn_kernel_path(
        &mut self,
        id: u64,
        kernel_path: &str,
        cut: bool,
    ) -> Option<String> {
        let path = if cut {
            self.view_path_truncated(id, kernel_path)
        } else {
            self.view_path(id, kernel_path)
        };
        match &path {
            Some(p) => self.insert(id, p.clone()),
            None if self.deferred.len() < REMOVED_KEEP => {
                self.deferred
                    .insert(id, format!("{}{kernel_path}", if cut { "…" } else { "" }));
            }
            None => {}
        }
        path
    }

    /// The depth in the view of a cgroup the kernel puts at `level`.
    pub(crate) fn view_level(&self, level: u32) -> u32 {
        let depth = self
            .kernel_root
            .as_deref()
            .map_or(0, |r| r.split('/').filter(|c| !c.is_empty()).count() as u32);
        level.saturating_sub(depth)
    }

    pub(crate) fn insert(&mut self, id: u64, path: impl Into<String>) {
        self.live.insert(id, path.into());
    }

    /// A cgroup was removed: keep it resolvable, in a bounded cache.
    pub(crate) fn remove(&mut self, id: u64) {
        self.deferred.remove(&id);
        if let Some(p) = self.live.remove(&id) {
            self.removed.insert(id, p);
            self.removed_order.push_back(id);
            while self.removed_order.len() > REMOVED_KEEP {
                if let Some(old) = self.removed_order.pop_front() {
                    self.removed.remove(&old);
                }
            }
        }
    }

    /// The path of a cgroup id, scanning the hierarchy on a miss.
    pub(crate) fn resolve(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.live.get(&id).or_else(|| self.removed.get(&id)) {
            return Some(p.clone());
        }
        if let Some(kp) = self.deferred.remove(&id) {
            let found = match kp.strip_prefix('…') {
                Some(cut) => self.view_path_truncated(id, cut),
                None => self.view_path(id, &kp),
            };
            if let Some(p) = found {
                self.insert(id, p.clone());
                return Some(p);
            }
            self.deferred.insert(id, kp);
        }
        if self.last_scan.is_none_or(|t| t.elapsed() >= SCAN_INTERVAL) {
            self.scan();
            if let Some(p) = self.live.get(&id) {
                return Some(p.clone());
            }
        }
        self.unresolved += 1;
        None
    }

    /// Walks the hierarchy and records every directory's id.
    pub(crate) fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Some(h) = self.hierarchy.clone() else {
            return;
        };
        h.walk(|dir, id| {
            if let Some(path) = h.path_of(dir) {
                self.live.insert(id, path);
            }
            ControlFlow::Continue(())
        });
    }

    /// Every live cgroup: (id, path).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, &str)> {
        self.live.iter().map(|(id, p)| (*id, p.as_str()))
    }

    pub(crate) fn hierarchy(&self) -> Option<&MemoryHierarchy> {
        self.hierarchy.as_ref()
    }
}

/// `path` less its leading `root`, if it is at or below `root`.
fn strip_root(path: &str, root: &str) -> Option<String> {
    if root == "/" {
        return Some(path.to_owned());
    }
    is_under(path, root).then(|| match &path[root.trim_end_matches('/').len()..] {
        "" => "/".to_owned(),
        rest => rest.to_owned(),
    })
}

/// Whether `path` is `ancestor` or below it.
pub(crate) fn is_under(path: &str, ancestor: &str) -> bool {
    let a = ancestor.trim_end_matches('/');
    path == a || (path.starts_with(a) && path.as_bytes().get(a.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_bounded_cache() {
        let mut ix = CgroupIndex::new(None);
        ix.insert(5, "/a/b");
        assert_eq!(ix.resolve(5).as_deref(), Some("/a/b"));
        ix.remove(5);
        assert_eq!(
            ix.resolve(5).as_deref(),
            Some("/a/b"),
            "removed cgroups still resolve"
        );
        for i in 0..(REMOVED_KEEP as u64 + 10) {
            ix.insert(1000 + i, format!("/x/{i}"));
            ix.remove(1000 + i);
        }
        assert_eq!(ix.resolve(5), None, "oldest removed entry evicted");
        assert_eq!(ix.resolve(0), None);
        assert!(ix.unresolved >= 1);
    }

    #[test]
    fn scan_finds_directories_by_inode() {
        let root = std::env::temp_dir().join(format!("oom-tracer-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("kubepods/burstable/pod-x/ctr with space")).unwrap();
        let h = MemoryHierarchy::fixture(super::super::CgroupVersion::V2, &root);
        let id = cgroup_id(&root.join("kubepods/burstable/pod-x/ctr with space")).unwrap();
        let mut ix = CgroupIndex::new(Some(h));
        assert_eq!(
            ix.resolve(id).as_deref(),
            Some("/kubepods/burstable/pod-x/ctr with space")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A view rooted at a node's cgroup: kernel paths lose the node's part,
    /// learnt from the id of a cgroup found in the view.
    #[test]
    fn kernel_paths_into_the_view() {
        let mount = std::env::temp_dir().join(format!("oom-tracer-view-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&mount);
        std::fs::create_dir_all(mount.join("kubepods/podx/ctr")).unwrap();
        let h = MemoryHierarchy::fixture(super::super::CgroupVersion::V1, &mount);
        let id = cgroup_id(&mount.join("kubepods/podx/ctr")).unwrap();
        let mut ix = CgroupIndex::new(Some(h));
        assert_eq!(ix.view_level(3), 3, "nothing learnt yet");
        assert_eq!(ix.view_path(id + 1, "/docker/n1/kubepods/podx/ctr"), None);
        assert_eq!(
            ix.view_path(id, "/docker/n1/kubepods/podx/ctr").as_deref(),
            Some("/kubepods/podx/ctr")
        );
        assert_eq!(ix.view_level(5), 3);
        // Learnt: gone cgroups and others map without a look.
        assert_eq!(
            ix.view_path(0, "/docker/n1/kubepods/gone").as_deref(),
            Some("/kubepods/gone")
        );
        assert_eq!(ix.view_path(0, "/docker/n1").as_deref(), Some("/"));
        assert_eq!(ix.view_path(0, "/docker/n2/kubepods"), None, "another node");
        // Truncated by the kernel: found below its last whole directory.
        assert_eq!(
            ix.view_path_truncated(id, "/docker/n1/kubepods/podx/ct")
                .as_deref(),
            Some("/kubepods/podx/ctr")
        );
        std::fs::remove_dir_all(&mount).unwrap();
        assert_eq!(strip_root("/a/b", "/"), Some("/a/b".into()));
    }

    /// kind's container scope below a node's prefix: longer than the
    /// kernel's 255 bytes, found by id below its pod's slice.
    #[test]
    fn a_truncated_kind_scope() {
        let mount = std::env::temp_dir().join(format!("oom-tracer-trunc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&mount);
        let pod = "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod5f0c1b2a_3d4e_4f60_8a9b_0c1d2e3f4a5b.slice";
        let ctr = format!("{pod}/cri-containerd-{}.scope", "7a".repeat(32));
        std::fs::create_dir_all(mount.join(&ctr[1..])).unwrap();
        let h = MemoryHierarchy::fixture(super::super::CgroupVersion::V1, &mount);
        let node = "/oom-tracer-test/layouts-16218/node-kind";
        let mut ix = CgroupIndex::new(Some(h));
        let pod_id = cgroup_id(&mount.join(&pod[1..])).unwrap();
        assert_eq!(
            ix.view_path(pod_id, &format!("{node}{pod}")).as_deref(),
            Some(pod)
        );
        let id = cgroup_id(&mount.join(&ctr[1..])).unwrap();
        let full = format!("{node}{ctr}");
        assert!(full.len() > 255);
        assert_eq!(
            ix.view_path_truncated(id, &full[..255]).as_deref(),
            Some(ctr.as_str())
        );
        std::fs::remove_dir_all(&mount).unwrap();
    }

    #[test]
    fn under() {
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/a/"));
        assert!(!is_under("/ab", "/a"));
        assert!(!is_under("/b", "/a"));
    }
}
