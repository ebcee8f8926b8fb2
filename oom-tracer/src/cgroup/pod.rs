//! Pod-like cgroups for `oom-tracer run`: a pod cgroup with one container
//! cgroup inside, as the kubelet lays them out, with memory limits set the
//! way the kubelet sets them (v1 `memory.limit_in_bytes`, v2 `memory.max`
//! with swap off).
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{CgroupError, CgroupVersion, MemoryHierarchy, cgroup_id};

/// Checks one path component that oom-tracer will create.
pub(crate) fn check_name(name: &str) -> Result<(), CgroupError> {
    let bad = |why| {
        Err(CgroupError::BadName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("not a directory name");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    if name.contains(['/', '\0', '\n']) {
        return bad("contains '/', NUL or newline");
    }
    if name.starts_with("cgroup.") || name.starts_with("memory.") {
        return bad("collides with cgroup control files");
    }
    Ok(())
}

/// Splits a cgroup parent such as `/oom-tracer/x` or `oom-tracer` into
/// checked components.
pub(crate) fn parent_components(parent: &str) -> Result<Vec<&str>, CgroupError> {
    let parts: Vec<&str> = parent.split('/').filter(|p| !p.is_empty()).collect();
    for p in &parts {
        check_name(p)?;
    }
    Ok(parts)
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path: path.to_owned(),
            value: value.to_owned(),
            source,
        })
}

/// A cgroup directory that oom-tracer created and removes.
#[derive(Debug)]
pub(crate) struct OwnedCgroup {
    pub dir: PathBuf,
    /// The cgroup path below the hierarchy root (`/oom-tracer/pod-x/stress-0`).
    pub path: String,
    pub id: u64,
}

/// Creates `dir` (and missing parents, which are kept). On v2 the memory
/// controller is enabled in each parent's `cgroup.subtree_control`.
fn make_dir(h: &MemoryHierarchy, dir: &Path) -> Result<OwnedCgroup, CgroupError> {
    let rel = dir.strip_prefix(&h.mount).unwrap_or(dir);
    let mut cur = h.mount.clone();
    for comp in rel.components() {
        if h.version == CgroupVersion::V2 {
            enable_memory(&cur)?;
        }
        cur.push(comp);
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && cur != dir => {}
            Err(source) => {
                return Err(CgroupError::Create {
                    path: cur.clone(),
                    source,
                });
            }
        }
    }
    Ok(OwnedCgroup {
        dir: dir.to_owned(),
        path: h.path_of(dir).unwrap_or_default(),
        id: cgroup_id(dir)?,
    })
}

fn enable_memory(dir: &Path) -> Result<(), CgroupError> {
    let ctl = dir.join("cgroup.subtree_control");
    let cur = std::fs::read_to_string(&ctl).unwrap_or_default();
    if cur.split_whitespace().any(|c| c == "memory") {
        return Ok(());
    }
    write_file(&ctl, "+memory")
}

/// Sets the memory limit (bytes; `None`: unlimited).
pub(crate) fn set_limit(
    h: &MemoryHierarchy,
    dir: &Path,
    limit: Option<u64>,
) -> Result<(), CgroupError> {
    match h.version {
        CgroupVersion::V1 => {
            let v = limit.map_or("-1".to_owned(), |b| b.to_string());
            write_file(&dir.join("memory.limit_in_bytes"), &v)
        }
        CgroupVersion::V2 => {
            let v = limit.map_or("max".to_owned(), |b| b.to_string());
            write_file(&dir.join("memory.max"), &v)?;
            // The kubelet runs containers without swap unless configured:
            // with swap the limit would page out instead of OOM-killing.
            let swap = dir.join("memory.swap.max");
            if limit.is_some() && swap.exists() {
                write_file(&swap, "0")?;
            }
            Ok(())
        }
    }
}

/// Processes in a cgroup (`cgroup.procs`).
pub(crate) fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

impl OwnedCgroup {
    /// SIGKILLs what is left inside, then removes the directory, retrying
    /// while the kernel still tears the tasks down.
    pub(crate) fn remove(&self, timeout: Duration) -> Result<(), CgroupError> {
        let deadline = Instant::now() + timeout;
        loop {
            for pid in procs(&self.dir) {
                // SAFETY: plain syscall.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(source) if Instant::now() >= deadline => {
                    return Err(CgroupError::Remove {
                        path: self.dir.clone(),
                        source,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

pub(crate) fn read_limit_hits(h: &MemoryHierarchy, dir: &Path) -> Option<u64> {
    match h.version {
        CgroupVersion::V1 => std::fs::read_to_string(dir.join("memory.failcnt"))
            .ok()?
            .trim()
            .parse()
            .ok(),
        CgroupVersion::V2 => parse_memory_events(
            &std::fs::read_to_string(dir.join("memory.events")).ok()?,
            "max",
        ),
    }
}

/// A key of a flat-keyed file such as `memory.events`.
pub(crate) fn parse_memory_events(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The pod cgroup of `run` and the parent it lives in.
#[derive(Debug)]
pub(crate) struct PodCgroups {
    pub hierarchy: MemoryHierarchy,
    pub pod: OwnedCgroup,
}

impl PodCgroups {
    /// Creates `<parent>/<pod_dir>` with an optional pod-level limit.
    pub(crate) fn create(
        hierarchy: &MemoryHierarchy,
        parent: &str,
        pod_dir: &str,
        pod_limit: Option<u64>,
    ) -> Result<Self, CgroupError> {
        check_name(pod_dir)?;
        let mut dir = hierarchy.mount.clone();
        for p in parent_components(parent)? {
            dir.push(p);
        }
        dir.push(pod_dir);
        let pod = make_dir(hierarchy, &dir)?;
        let made = Self {
            hierarchy: hierarchy.clone(),
            pod,
        };
        if pod_limit.is_some() {
            set_limit(hierarchy, &made.pod.dir, pod_limit)?;
        }
        Ok(made)
    }

    /// Creates a container cgroup inside the pod with its limit.
    pub(crate) fn create_container(
        &self,
        name: &str,
        limit: Option<u64>,
    ) -> Result<OwnedCgroup, CgroupError> {
        check_name(name)?;
        let c = make_dir(&self.hierarchy, &self.pod.dir.join(name))?;
        let configured = set_limit(&self.hierarchy, &c.dir, limit).and_then(|()| {
            // The kubelet (1.28+) kills a cgroup v2 container as a whole on
            // OOM: memory.oom.group = 1.
            let group = c.dir.join("memory.oom.group");
            if self.hierarchy.version == CgroupVersion::V2 && group.exists() {
                write_file(&group, "1")?;
            }
            Ok(())
        });
        if let Err(e) = configured {
            let _ = c.remove(Duration::from_millis(200));
            return Err(e);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("pod-1234").is_ok());
        for bad in ["", ".", "..", "a/b", "memory.max", "cgroup.procs", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parent_components("/oom-tracer//x/").unwrap(),
            ["oom-tracer", "x"]
        );
        assert!(parent_components("/a/../b").is_err());
        assert!(parent_components("/").unwrap().is_empty());
    }

    #[test]
    fn memory_events() {
        let t = "low 0\nhigh 0\nmax 42\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_memory_events(t, "max"), Some(42));
        assert_eq!(parse_memory_events(t, "oom_kill"), Some(1));
        assert_eq!(parse_memory_events(t, "nope"), None);
        assert_eq!(parse_memory_events("max banana", "max"), None);
    }

    /// A fixture cgroup v2 tree in a temporary directory: parents get
    /// `+memory` in subtree_control, the container gets memory.max and
    /// memory.swap.max = 0.
    #[test]
    fn v2_layout_on_a_fixture_tree() {
        let root =
            std::env::temp_dir().join(format!("oom-tracer-v2-fixture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let h = MemoryHierarchy::fixture(CgroupVersion::V2, &root);
        // On a real cgroupfs the kernel creates control files in new
        // directories; on the fixture, create them as the kernel would.
        std::fs::create_dir_all(root.join("parent")).unwrap();
        std::fs::write(root.join("parent/cgroup.subtree_control"), "").unwrap();
        std::fs::create_dir_all(root.join("parent/pod-a")).unwrap();
        std::fs::write(root.join("parent/pod-a/cgroup.subtree_control"), "").unwrap();
        std::fs::write(root.join("parent/pod-a/memory.max"), "").unwrap();
        let pod = OwnedCgroup {
            dir: root.join("parent/pod-a"),
            path: "/parent/pod-a".into(),
            id: cgroup_id(&root.join("parent/pod-a")).unwrap(),
        };
        set_limit(&h, &pod.dir, Some(50 << 20)).unwrap();
        assert_eq!(
            std::fs::read_to_string(pod.dir.join("memory.max")).unwrap(),
            "52428800"
        );
        // Container dir made through make_dir enables memory on the way.
        let ctr_dir = root.join("parent/pod-a/ctr");
        let err = make_dir(&h, &ctr_dir);
        // make_dir succeeds on a plain directory tree.
        let ctr = err.unwrap();
        assert_eq!(ctr.path, "/parent/pod-a/ctr");
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("parent/pod-a/cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        std::fs::write(ctr_dir.join("memory.max"), "").unwrap();
        std::fs::write(ctr_dir.join("memory.swap.max"), "").unwrap();
        set_limit(&h, &ctr_dir, Some(1 << 20)).unwrap();
        assert_eq!(
            std::fs::read_to_string(ctr_dir.join("memory.max")).unwrap(),
            "1048576"
        );
        assert_eq!(
            std::fs::read_to_string(ctr_dir.join("memory.swap.max")).unwrap(),
            "0"
        );
        set_limit(&h, &ctr_dir, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(ctr_dir.join("memory.max")).unwrap(),
            "max"
        );
        std::fs::write(ctr_dir.join("memory.events"), "max 7\noom_kill 1\n").unwrap();
        assert_eq!(read_limit_hits(&h, &ctr.dir), Some(7));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
