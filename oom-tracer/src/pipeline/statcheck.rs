//! The startup check of the memory breakdown: before trusting where this
//! kernel keeps each memcg statistic (`bpf/memstat.rs`), read them in the
//! kernel for a cgroup oom-tracer controls and compare with what the
//! kernel's own `memory.stat` says. A layout that does not match to the
//! byte is not used: wrong numbers are worse than none.
//!
//! The cgroup: in `run`, a probe cgroup of its own below `--cgroup-parent`,
//! which oom-tracer enters for the check; in the agent, the same below
//! the hierarchy root where the cgroup tree is writable, else its own
//! cgroup. oom-tracer puts distinct amounts of anonymous memory and shmem
//! there, reads `memory.stat`, has its programs copy the memcg's raw
//! statistics (it signals itself; `signal_generate` answers tasks in the
//! `PROBE` map), reads `memory.stat` again, and compares.
use std::{
    collections::BTreeMap,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use oom_tracer_common::{MemcgStats, decode::RawEvent};

use super::{Kernel, Pipeline};
use crate::{
    bpf::memstat::{StatItem, StatLayout, to_bytes},
    cgroup::{CgroupVersion, MemoryHierarchy, pod::PodCgroups},
    errors,
    pods::PodAccessor,
    schema::BreakdownCheck,
};

/// Where the check runs.
#[derive(Clone, Debug)]
pub(crate) enum ProbeSite {
    /// A probe cgroup below this parent, entered for the check.
    Below(String),
    /// The tracer's own cgroup, as it is.
    Own,
}

/// What the probe puts in its cgroup: amounts no other statistic has.
const ANON_BYTES: usize = (4 << 20) + 5 * 4096;
const SHMEM_BYTES: usize = (1 << 20) + 3 * 4096;

#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("no list of memcg statistics fits this kernel: {0}")]
    NoLayout(String),
    #[error("creating the probe cgroup")]
    Cgroup(#[source] crate::cgroup::CgroupError),
    #[error("entering {path}")]
    Enter {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the probe's memory")]
    Memory(#[source] std::io::Error),
    #[error("the kernel did not answer the probe in 2 s (is signal_generate attached?)")]
    NoAnswer,
    #[error("reading {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no path for the probe's memcg {0}")]
    NoPath(u64),
    #[error("{0}")]
    Mismatch(String),
}

impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// Decides whether `oom_kill` records carry the breakdown, and says why.
    /// `corrupt`: shift the derived layout by one entry (a test's way to
    /// see the check fail).
    pub(crate) async fn check_breakdown(
        &mut self,
        site: ProbeSite,
        corrupt: bool,
    ) -> BreakdownCheck {
        let result = self.run_check(&site, corrupt).await;
        let check = match result {
            Ok((layout, detail)) => {
                self.translator.set_layout(Some(layout));
                BreakdownCheck {
                    enabled: true,
                    detail,
                }
            }
            Err(e) => {
                self.translator.set_layout(None);
                BreakdownCheck {
                    enabled: false,
                    detail: errors::chain(&e),
                }
            }
        };
        if check.enabled {
            tracing::info!("memory breakdown at OOM kills: on ({})", check.detail);
        } else {
            tracing::warn!(
                "memory breakdown at OOM kills: off, oom_kill records carry none ({})",
                check.detail
            );
        }
        self.breakdown = Some(check.clone());
        check
    }

    async fn run_check(
        &mut self,
        site: &ProbeSite,
        corrupt: bool,
    ) -> Result<(StatLayout, String), CheckError> {
        let mut layouts = self.kernel.stat_layouts().map_err(CheckError::NoLayout)?;
        if corrupt {
            for l in &mut layouts {
                for (_, i) in &mut l.index {
                    *i += 1;
                }
            }
        }
        let hierarchy = self
            .translator
            .index
            .hierarchy()
            .cloned()
            .ok_or_else(|| CheckError::NoLayout("no memory hierarchy".into()))?;
        let _cgroup = match site {
            ProbeSite::Below(parent) => Some(ProbeCgroup::enter(&hierarchy, parent)?),
            ProbeSite::Own => None,
        };
        let load = Load::new()?;
        // Where the statistics are: the memcg the kernel says we are in.
        let first = self.probe().await?;
        let path = self
            .translator
            .index
            .resolve(first.memcg_id)
            .ok_or(CheckError::NoPath(first.memcg_id))?;
        let dir = hierarchy.dir(&path);
        let before = read_stats(&hierarchy, &dir)?;
        let raw = self.probe().await?;
        let after = read_stats(&hierarchy, &dir)?;
        drop(load);
        let page = self.translator.page_size();
        let mut last_err = String::new();
        for layout in layouts {
            match compare(&layout, &raw, &before, &after, page, hierarchy.version) {
                Ok(checked) => {
                    let detail = format!(
                        "{} match memory.stat of {path}; layout: {}",
                        checked.join(", "),
                        layout.how
                    );
                    return Ok((layout, detail));
                }
                Err(e) => last_err = e,
            }
        }
        Err(CheckError::Mismatch(format!(
            "the kernel's statistics of {path} do not match its memory.stat: {last_err}"
        )))
    }

    /// Has the programs copy this process's memcg statistics; keeps every
    /// other record for after the check.
    async fn probe(&mut self) -> Result<MemcgStats, CheckError> {
        let tgid = std::process::id();
        self.kernel.probe(tgid, true);
        // SAFETY: signalling ourselves with a signal whose default is to
        // be ignored (SIGWINCH); no handler is installed for it.
        unsafe { libc::kill(libc::getpid(), libc::SIGWINCH) };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut answer = None;
        while answer.is_none() && Instant::now() < deadline {
            let mut raw = Vec::new();
            self.kernel.drain(&mut |b| raw.push(b.to_vec()));
            for bytes in raw {
                match oom_tracer_common::decode::decode(&bytes) {
                    Ok(RawEvent::MemcgProbe(p)) if p.tgid == tgid => answer = Some(p.stats),
                    Ok(ev) => self.backlog.push(ev),
                    Err(e) => self.decode_error(&e),
                }
            }
            if answer.is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.kernel.probe(tgid, false);
        answer.ok_or(CheckError::NoAnswer)
    }
}

/// The probe cgroup, entered by this process; left and removed on drop.
struct ProbeCgroup {
    pods: PodCgroups,
    home: PathBuf,
}

impl ProbeCgroup {
    fn enter(h: &MemoryHierarchy, parent: &str) -> Result<Self, CheckError> {
        let home = own_cgroup_dir(h).unwrap_or_else(|| h.mount.clone());
        let name = format!("probe-{}", std::process::id());
        let pods = PodCgroups::create(h, parent, &name, None).map_err(CheckError::Cgroup)?;
        let procs = pods.pod.dir.join("cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string()).map_err(|source| {
            let _ = pods.pod.remove(Duration::from_millis(200));
            CheckError::Enter {
                path: procs.clone(),
                source,
            }
        })?;
        Ok(Self { pods, home })
    }
}

impl Drop for ProbeCgroup {
    fn drop(&mut self) {
        let pid = std::process::id().to_string();
        if let Err(e) = std::fs::write(self.home.join("cgroup.procs"), &pid) {
            tracing::warn!("leaving the probe cgroup for {}: {e}", self.home.display());
        }
        if let Err(e) = self.pods.pod.remove(Duration::from_secs(2)) {
            tracing::warn!("{}", errors::chain(&e));
        }
    }
}

/// This process's memory cgroup directory, from /proc/self/cgroup.
fn own_cgroup_dir(h: &MemoryHierarchy) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        let mine = match h.version {
            CgroupVersion::V1 => ctrl.split(',').any(|c| c == "memory"),
            CgroupVersion::V2 => ctrl.is_empty(),
        };
        mine.then(|| path.to_owned())
    })?;
    Some(h.dir(&path))
}

/// Anonymous memory and shmem of sizes nothing else has, held for the check.
struct Load {
    _anon: Vec<u8>,
    _shmem: OwnedFd,
}

impl Load {
    fn new() -> Result<Self, CheckError> {
        // Every page written, so every page is charged.
        let anon = vec![0x5a_u8; ANON_BYTES];
        // SAFETY: memfd_create with a NUL-terminated name; the fd is owned below.
        let fd = unsafe { libc::memfd_create(c"oom-tracer-probe".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(CheckError::Memory(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let shmem = unsafe { OwnedFd::from_raw_fd(fd) };
        let chunk = vec![0xa5_u8; SHMEM_BYTES];
        // SAFETY: writing `chunk` to our own memfd.
        let n = unsafe { libc::write(shmem.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) };
        if n != SHMEM_BYTES as isize {
            return Err(CheckError::Memory(std::io::Error::last_os_error()));
        }
        Ok(Self {
            _anon: anon,
            _shmem: shmem,
        })
    }
}

/// `memory.stat` (and, on v1, the kmem counter) in bytes, by key.
fn read_stats(h: &MemoryHierarchy, dir: &Path) -> Result<BTreeMap<String, u64>, CheckError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| CheckError::Stat { path, source })
    };
    let mut out: BTreeMap<String, u64> = read("memory.stat")?
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect();
    if h.version == CgroupVersion::V1
        && let Ok(v) = read("memory.kmem.usage_in_bytes")
        && let Ok(n) = v.trim().parse()
    {
        out.insert(KMEM_V1.to_owned(), n);
    }
    Ok(out)
}

/// The v1 kmem page counter, under a key of its own.
const KMEM_V1: &str = "memory.kmem.usage_in_bytes";

/// The key an item is checked against, on this cgroup version.
fn key(item: StatItem, v: CgroupVersion) -> Option<&'static str> {
    match (v, item) {
        (CgroupVersion::V1, StatItem::Kernel) => Some(KMEM_V1),
        (CgroupVersion::V1, _) => item.v1_key(),
        (CgroupVersion::V2, _) => item.v2_key(),
    }
}

/// Items that must be present, non-zero and equal for a layout to pass.
const REQUIRED: [StatItem; 4] = [
    StatItem::Anon,
    StatItem::File,
    StatItem::Shmem,
    StatItem::Kernel,
];

/// Whether `layout` reads `raw` as `memory.stat` said before and after;
/// the items checked, or what did not match.
fn compare(
    layout: &StatLayout,
    raw: &MemcgStats,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    page: u64,
    version: CgroupVersion,
) -> Result<Vec<&'static str>, String> {
    let len = (raw.state_len as usize).min(raw.state.len());
    let mut checked = Vec::new();
    for item in StatItem::ALL {
        let Some(k) = key(item, version) else {
            continue;
        };
        let (Some(&b), Some(&a)) = (before.get(k), after.get(k)) else {
            if REQUIRED.contains(&item) {
                return Err(format!("memory.stat has no {k}"));
            }
            continue;
        };
        let Some(i) = layout.get(item).filter(|&i| i < len) else {
            return Err(format!("{} is not in the layout", item.kernel_name()));
        };
        let got = to_bytes(raw.state[i], item.unit(), page);
        // The v1 kmem counter is a page counter, not the statistic: close
        // is all it can be.
        let slack = if k == KMEM_V1 {
            (b.max(a) / 50).max(64 << 10)
        } else {
            0
        };
        let (lo, hi) = (
            b.min(a).saturating_sub(slack),
            b.max(a).saturating_add(slack),
        );
        if got < lo || got > hi {
            return Err(format!(
                "{} reads {got} at entry {i}, memory.stat {k} says {b}..{a}",
                item.kernel_name()
            ));
        }
        if REQUIRED.contains(&item) && got == 0 {
            return Err(format!(
                "{} is 0 in the probe cgroup: nothing to check it by",
                item.kernel_name()
            ));
        }
        checked.push(k);
    }
    let anon = layout.get(StatItem::Anon).map_or(0, |i| {
        to_bytes(
            raw.state[i.min(len.saturating_sub(1))],
            StatItem::Anon.unit(),
            page,
        )
    });
    if anon < ANON_BYTES as u64 {
        return Err(format!(
            "anon reads {anon}, less than the probe's own {ANON_BYTES}"
        ));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> StatLayout {
        StatLayout {
            index: vec![
                (StatItem::Anon, 0),
                (StatItem::File, 1),
                (StatItem::Shmem, 2),
                (StatItem::Kernel, 3),
            ],
            events: [None; 3],
            how: "test".into(),
        }
    }

    fn stats(values: &[(&str, u64)]) -> BTreeMap<String, u64> {
        values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_layout_passes_only_where_every_item_matches() {
        let mut raw = MemcgStats::EMPTY;
        raw.state[..4].copy_from_slice(&[1030, 300, 259, 40]);
        raw.state_len = 40;
        let page = 4096;
        let v2 = stats(&[
            ("anon", 1030 * page),
            ("file", 300 * page),
            ("shmem", 259 * page),
            ("kernel", 40 * page),
        ]);
        let ok = compare(&layout(), &raw, &v2, &v2, page, CgroupVersion::V2).unwrap();
        assert_eq!(ok, ["anon", "file", "shmem", "kernel"]);
        // One entry off: anon reads file's value.
        let mut shifted = layout();
        for (_, i) in &mut shifted.index {
            *i += 1;
        }
        let err = compare(&shifted, &raw, &v2, &v2, page, CgroupVersion::V2).unwrap_err();
        assert!(err.contains("NR_ANON_MAPPED reads"), "{err}");
        // A value that moved between the two reads may be either.
        let later = stats(&[
            ("anon", 1031 * page),
            ("file", 300 * page),
            ("shmem", 259 * page),
            ("kernel", 40 * page),
        ]);
        assert!(compare(&layout(), &raw, &v2, &later, page, CgroupVersion::V2).is_ok());
        // v1: hierarchical keys, the kmem counter within 2 % or 64 KiB.
        let v1 = stats(&[
            ("total_rss", 1030 * page),
            ("total_cache", 300 * page),
            ("total_shmem", 259 * page),
            (KMEM_V1, 40 * page + 8192),
        ]);
        assert!(compare(&layout(), &raw, &v1, &v1, page, CgroupVersion::V1).is_ok());
    }
}
