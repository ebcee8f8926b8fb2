//! cgroup id → path. The kernel reports memcgs by id (the kernfs id, equal
//! to the directory's inode number); records carry paths. Ids are learnt
//! from cgroups oom-tracer creates, from `cgroup_mkdir` events, and by
//! scanning the hierarchy on a miss. Removed cgroups stay resolvable for a
//! while (bounded), so a container whose cgroup is gone still resolves.
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use super::MemoryHierarchy;

/// Removed cgroups kept resolvable.
const REMOVED_KEEP: usize = 1024;
/// At most one full scan per this interval.
const SCAN_INTERVAL: Duration = Duration::from_millis(500);
/// Bound on a scan: directories visited.
const SCAN_LIMIT: usize = 100_000;

#[derive(Debug)]
pub(crate) struct CgroupIndex {
    hierarchy: Option<MemoryHierarchy>,
    live: HashMap<u64, String>,
    removed: HashMap<u64, String>,
    removed_order: VecDeque<u64>,
    last_scan: Option<Instant>,
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
            unresolved: 0,
        }
    }

    pub(crate) fn insert(&mut self, id: u64, path: impl Into<String>) {
        self.live.insert(id, path.into());
    }

    /// A cgroup was removed: keep it resolvable, in a bounded cache.
    pub(crate) fn remove(&mut self, id: u64) {
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
        let mut stack = vec![h.mount.clone()];
        let mut seen = 0usize;
        while let Some(dir) = stack.pop() {
            seen += 1;
            if seen > SCAN_LIMIT {
                tracing::warn!("cgroup scan stopped after {SCAN_LIMIT} directories");
                break;
            }
            if let (Ok(id), Some(path)) = (super::cgroup_id(&dir), h.path_of(&dir)) {
                self.live.insert(id, path);
            }
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }

    /// Every live cgroup: (id, path).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, &str)> {
        self.live.iter().map(|(id, p)| (*id, p.as_str()))
    }

    pub(crate) fn hierarchy(&self) -> Option<&MemoryHierarchy> {
        self.hierarchy.as_ref()
    }
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
        let h = MemoryHierarchy {
            version: super::super::CgroupVersion::V2,
            mount: root.clone(),
            hierarchy_id: 0,
        };
        let id =
            super::super::cgroup_id(&root.join("kubepods/burstable/pod-x/ctr with space")).unwrap();
        let mut ix = CgroupIndex::new(Some(h));
        assert_eq!(
            ix.resolve(id).as_deref(),
            Some("/kubepods/burstable/pod-x/ctr with space")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn under() {
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/a/"));
        assert!(!is_under("/ab", "/a"));
        assert!(!is_under("/b", "/a"));
    }
}
