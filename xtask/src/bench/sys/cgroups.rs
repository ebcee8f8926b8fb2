//! The memory cgroups the benchmark makes, and reading them.
use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{MEMCG, signal};

/// A memory cgroup's kernfs id: its directory's inode number.
pub(in crate::bench) fn cgroup_id(dir: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .ino())
}

/// The path oom-tracer prints for a cgroup directory: relative to the hierarchy's root.
pub(in crate::bench) fn cgroup_path(dir: &Path) -> String {
    format!(
        "/{}",
        dir.strip_prefix(MEMCG)
            .unwrap_or(dir)
            .to_string_lossy()
            .trim_start_matches('/')
    )
}

/// The process ids in a cgroup.
fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The memory cgroups this benchmark created, removed in reverse order on
/// drop (processes left in them are killed first). Directories that existed
/// before are never touched.
#[derive(Default)]
pub(in crate::bench) struct Cgroups {
    /// (directory, whether it was only created as a parent of another).
    created: Vec<(PathBuf, bool)>,
}

impl Cgroups {
    /// Creates `dir` (and the missing parents, which it then also owns).
    pub(in crate::bench) fn create(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut d = dir.to_owned();
        while !d.exists() {
            missing.push(d.clone());
            if !d.pop() {
                break;
            }
        }
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
            let parent = d != dir;
            self.created.push((d, parent));
        }
        Ok(())
    }

    pub(in crate::bench) fn set_limit(dir: &Path, bytes: u64) -> anyhow::Result<()> {
        let f = dir.join("memory.limit_in_bytes");
        std::fs::write(&f, bytes.to_string()).with_context(|| format!("writing {}", f.display()))
    }

    /// Removes `dir` (one this set created) and everything it created below it.
    pub(in crate::bench) fn remove(&mut self, dir: &Path) -> anyhow::Result<()> {
        let (below, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.created)
            .into_iter()
            .partition(|(d, _)| d.starts_with(dir));
        self.created = keep;
        let mut err = None;
        for (d, parent) in below.iter().rev() {
            if let Err(e) = remove_dir(d, *parent) {
                err.get_or_insert(e);
            }
        }
        err.map_or(Ok(()), Err)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for (d, parent) in std::mem::take(&mut self.created).iter().rev() {
            if let Err(e) = remove_dir(d, *parent) {
                eprintln!("xtask: bench: {e:#}");
            }
        }
    }
}

/// Kills what is left in a cgroup, then removes it (memcg removal waits
/// for the killed tasks to be released). A directory created only as a
/// parent (kubepods/burstable on a machine without a kubelet) may have been
/// taken into use by someone else meanwhile: it is removed only if empty.
fn remove_dir(dir: &Path, parent: bool) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if parent {
        return std::fs::remove_dir(dir).or_else(|e| {
            eprintln!(
                "xtask: bench: leaving {} ({e}): it is in use",
                dir.display()
            );
            Ok(())
        });
    }
    // Everything below a cgroup this benchmark created is its own
    // (oom-tracer run's pod cgroups under --cgroup-parent included).
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir(&e.path(), false)?;
            }
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        for pid in procs(dir) {
            signal(pid, libc::SIGKILL);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() > until => {
                bail!("removing cgroup {}: {e}", dir.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
