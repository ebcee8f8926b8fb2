//! The comparison itself: the kernel's raw statistics of a memcg, read
//! in the kernel for a probe, against what `memory.stat` said just before
//! and just after.
use std::{collections::BTreeMap, path::Path};

use oom_tracer_common::MemcgStats;

use super::{CheckError, child::ANON_BYTES};
use crate::{
    bpf::memstat::{StatItem, StatLayout, to_bytes},
    cgroup::{CgroupVersion, MemoryHierarchy},
};

/// `memory.stat` (and, on v1, the kmem counter) in bytes, by key.
pub(super) fn read_stats(
    h: &MemoryHierarchy,
    dir: &Path,
) -> Result<BTreeMap<String, u64>, CheckError> {
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
pub(super) fn compare(
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
