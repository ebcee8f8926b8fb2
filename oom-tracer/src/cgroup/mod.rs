//! Memory cgroups: which hierarchy holds the memory controller (v1 or v2),
//! pod-like cgroup pairs for `run` (`pod.rs`), and cgroup id → path
//! resolution (`index.rs`).
//!
//! One mapping between the kernel's cgroups and this process's view of
//! them. The view is the memory hierarchy as mounted here, which on a node
//! in a container is rooted at the node's own cgroup (a cgroup namespace,
//! or a bind mount of a sub-cgroup: mountinfo's root field). Every path
//! oom-tracer handles is a path of the view (`/kubepods/…`, what the
//! kubelet on this node names it), turned into a directory by
//! [`MemoryHierarchy::dir`]. The kernel names cgroups by id, which is the
//! same in every view (the directory's inode), and, in the cgroup
//! tracepoints only, by its full path from the hierarchy's root, which
//! [`index::CgroupIndex::view_path`] maps into the view by finding the id.
use std::{
    ops::ControlFlow,
    path::{Path, PathBuf},
};

pub(crate) mod index;
pub(crate) mod pod;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error(
        "no memory cgroup controller is mounted (neither a cgroup v1 `memory` hierarchy nor cgroup2 with `memory` in cgroup.controllers)"
    )]
    NoMemoryController,
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("creating cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid cgroup name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
}

pub(crate) use crate::schema::CgroupVersion;

/// Where the memory controller lives on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemoryHierarchy {
    pub version: CgroupVersion,
    /// Mount point of the hierarchy (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup`).
    pub mount: PathBuf,
    /// Hierarchy id as the cgroup tracepoints report it (`root`): from
    /// /proc/cgroups on v1, 0 on v2.
    pub hierarchy_id: u32,
    /// mountinfo's root field for the mount: the cgroup the view is rooted
    /// at, as this process's cgroup namespace names it (`/` on a bare node
    /// and for a hierarchy mounted inside a cgroup namespace; `/<node>` for
    /// a bind mount of a sub-cgroup, docker's way on a v1 host).
    pub root: String,
}

/// Bound on a walk of the view: directories visited.
const WALK_LIMIT: usize = 100_000;

#[cfg(test)]
impl MemoryHierarchy {
    /// Tests: a hierarchy of `version` mounted at `mount` (a fixture
    /// directory), rooted at `/` (hierarchy id 4 on v1, 0 on v2).
    pub(crate) fn fixture(version: CgroupVersion, mount: &Path) -> Self {
        Self {
            version,
            mount: mount.to_path_buf(),
            hierarchy_id: if version == CgroupVersion::V1 { 4 } else { 0 },
            root: "/".into(),
        }
    }
}

impl MemoryHierarchy {
    /// Detects the memory controller from /proc/self/mountinfo and /proc/cgroups.
    pub(crate) fn detect() -> Result<Self, CgroupError> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|source| CgroupError::Read {
                path: p.into(),
                source,
            })
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        let proc_cgroups = read("/proc/cgroups").unwrap_or_default();
        Self::from_tables(&mountinfo, &proc_cgroups, |mount| {
            std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default()
        })
    }

    /// Detection from the text of mountinfo and /proc/cgroups; `controllers`
    /// reads a cgroup2 mount's `cgroup.controllers`.
    pub(crate) fn from_tables(
        mountinfo: &str,
        proc_cgroups: &str,
        controllers: impl Fn(&Path) -> String,
    ) -> Result<Self, CgroupError> {
        let (mut v1_mounts, mut v2_mounts) = (Vec::new(), Vec::new());
        for line in mountinfo.lines() {
            // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split_whitespace();
            let (Some(fstype), _, Some(superopts)) = (post.next(), post.next(), post.next()) else {
                continue;
            };
            let mut pre = pre.split_whitespace().skip(3);
            let (Some(root), Some(mountpoint)) = (pre.next(), pre.next()) else {
                continue;
            };
            let m = (
                PathBuf::from(unescape_mountinfo(mountpoint)),
                unescape_mountinfo(root),
            );
            match fstype {
                "cgroup" if superopts.split(',').any(|o| o == "memory") => v1_mounts.push(m),
                "cgroup2" => v2_mounts.push(m),
                _ => {}
            }
        }
        if let Some((mount, root)) = visible(v1_mounts) {
            return Ok(Self {
                version: CgroupVersion::V1,
                mount,
                hierarchy_id: v1_hierarchy_id(proc_cgroups).unwrap_or(0),
                root,
            });
        }
        let with_memory = v2_mounts
            .into_iter()
            .filter(|(m, _)| controllers(m).split_whitespace().any(|c| c == "memory"))
            .collect();
        visible(with_memory)
            .map(|(mount, root)| Self {
                version: CgroupVersion::V2,
                mount,
                hierarchy_id: 0,
                root,
            })
            .ok_or(CgroupError::NoMemoryController)
    }

    /// Absolute directory of a cgroup path such as `/oom-tracer/pod1`.
    pub(crate) fn dir(&self, cgroup_path: &str) -> PathBuf {
        self.mount.join(cgroup_path.trim_start_matches('/'))
    }

    /// The memory limit of the cgroup at `path` (`None`: unlimited or unreadable).
    #[cfg_attr(not(feature = "agent"), expect(dead_code, reason = "the agent's"))]
    pub(crate) fn limit_of(&self, path: &str) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        let v: u64 = std::fs::read_to_string(self.dir(path).join(file))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // v1 reports "unlimited" as PAGE_COUNTER_MAX pages in bytes.
        (v < (1u64 << 62)).then_some(v)
    }

    /// The cgroup path (`/a/b`) of a directory below the mount.
    pub(crate) fn path_of(&self, dir: &Path) -> Option<String> {
        let rel = dir.strip_prefix(&self.mount).ok()?;
        Some(format!("/{}", rel.to_string_lossy()))
    }

    /// Visits every cgroup directory of the view with its id, depth
    /// first, until `f` breaks (at most [`WALK_LIMIT`] directories).
    pub(crate) fn walk(&self, f: impl FnMut(&Path, u64) -> ControlFlow<()>) {
        walk_below(&self.mount, f);
    }

    /// The directory of cgroup `id` at or below `dir`, if it is there.
    pub(crate) fn find_below(&self, dir: &Path, id: u64) -> Option<PathBuf> {
        let mut found = None;
        walk_below(dir, |d, i| {
            if i == id {
                found = Some(d.to_owned());
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        found
    }

    /// The directory of cgroup `id` in the view, if the view holds it.
    pub(crate) fn find(&self, id: u64) -> Option<PathBuf> {
        self.find_below(&self.mount, id)
    }
}

/// [`MemoryHierarchy::walk`] from `start`.
fn walk_below(start: &Path, mut f: impl FnMut(&Path, u64) -> ControlFlow<()>) {
    let mut stack = vec![start.to_owned()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        seen += 1;
        if seen > WALK_LIMIT {
            tracing::warn!("cgroup walk stopped after {WALK_LIMIT} directories");
            return;
        }
        if let Ok(id) = cgroup_id(&dir)
            && f(&dir, id).is_break()
        {
            return;
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

/// The first mount point's (mount point, root), as seen there: a later
/// mount on the same point (a container's view mounted over the host's)
/// hides the earlier ones.
fn visible(mounts: Vec<(PathBuf, String)>) -> Option<(PathBuf, String)> {
    let first = mounts.first()?.0.clone();
    mounts.into_iter().rfind(|(m, _)| *m == first)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn v1_hierarchy_id(proc_cgroups: &str) -> Option<u32> {
    proc_cgroups.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()? == "memory").then(|| f.next()?.parse().ok())?
    })
}

/// The id of a cgroup directory: its inode number, which is the kernfs id
/// that the eBPF programs and cgroup tracepoints report.
pub(crate) fn cgroup_id(dir: &Path) -> Result<u64, CgroupError> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir)
        .map(|m| m.ino())
        .map_err(|source| CgroupError::Read {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
memory\t4\t18\t1
";
    const UNIFIED: &str = "25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_v1_memory_wins() {
        let h = MemoryHierarchy::from_tables(HYBRID, PROC_CGROUPS, |_| "hugetlb".into()).unwrap();
        assert_eq!(h.version, CgroupVersion::V1);
        assert_eq!(h.mount, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(h.hierarchy_id, 4);
        assert_eq!(h.root, "/");
        assert_eq!(
            h.dir("/oom-tracer/pod"),
            Path::new("/sys/fs/cgroup/memory/oom-tracer/pod")
        );
        assert_eq!(
            h.path_of(Path::new("/sys/fs/cgroup/memory/a/b")).as_deref(),
            Some("/a/b")
        );
    }

    #[test]
    fn a_bind_of_a_sub_cgroup_keeps_its_root() {
        let docker_v1 = "35 31 0:32 /docker/ab\\040c /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n";
        let h = MemoryHierarchy::from_tables(docker_v1, PROC_CGROUPS, |_| String::new()).unwrap();
        assert_eq!(h.root, "/docker/ab c");
        assert_eq!(h.mount, Path::new("/sys/fs/cgroup/memory"));
        // Mounted over the host's: the later mount is the one seen.
        let stacked = format!("{HYBRID}{docker_v1}");
        let h = MemoryHierarchy::from_tables(&stacked, PROC_CGROUPS, |_| String::new()).unwrap();
        assert_eq!(h.root, "/docker/ab c");
    }

    #[test]
    fn unified_v2() {
        let h = MemoryHierarchy::from_tables(UNIFIED, "", |m| {
            assert_eq!(m, Path::new("/sys/fs/cgroup"));
            "cpuset cpu io memory hugetlb pids rdma misc".into()
        })
        .unwrap();
        assert_eq!(h.version, CgroupVersion::V2);
        assert_eq!(h.hierarchy_id, 0);
        assert_eq!(h.path_of(Path::new("/sys/fs/cgroup")).as_deref(), Some("/"));
    }

    #[test]
    fn v2_without_memory_is_an_error() {
        let err = MemoryHierarchy::from_tables(UNIFIED, "", |_| "cpu pids".into()).unwrap_err();
        assert!(matches!(err, CgroupError::NoMemoryController));
        assert!(MemoryHierarchy::from_tables("garbage\n\n - \n", "", |_| String::new()).is_err());
    }

    #[test]
    fn escaped_mountpoints() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/trailing\\04"), "/trailing\\04");
    }
}
