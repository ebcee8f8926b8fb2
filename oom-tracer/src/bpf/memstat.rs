//! Where a memory cgroup's statistics live in the kernel, per kernel.
//!
//! `mem_cgroup.vmstats->state[]` holds the memcg's page state, flushed
//! from the per-CPU counters (the kernel flushes it for its own OOM report
//! just before `mark_victim`). The programs copy the array raw; which
//! entry is which item depends on the kernel:
//!
//! - before 6.11 the array is indexed by the item's enum value
//!   (`enum node_stat_item`, then `enum memcg_stat_item`): BTF gives it;
//! - since 6.11 it holds only the items the memory controller tracks, in
//!   the order of `memcg_node_stat_items[]` then `memcg_stat_items[]` in
//!   mm/memcontrol.c, some of them configuration-dependent. BTF gives the
//!   enums and the array's length, not the list: the candidates below are
//!   the lists kernels have had, filtered by the enums this kernel has and
//!   its configuration, and kept when their length is the array's.
//!
//! A derived layout is trusted only once it matched a live `memory.stat`
//! at startup (`pipeline/statcheck.rs`).

/// A statistic oom-tracer reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum StatItem {
    Anon,
    /// Page cache, shmem included (the kernel counts tmpfs as file pages).
    File,
    Shmem,
    SlabReclaimable,
    SlabUnreclaimable,
    KernelStack,
    PageTables,
    Percpu,
    Sock,
    /// All kernel memory charged to the memcg.
    Kernel,
    Swap,
}

/// How the kernel counts an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Pages,
    Bytes,
    KiB,
}

impl StatItem {
    pub(crate) const ALL: [Self; 11] = [
        Self::Anon,
        Self::File,
        Self::Shmem,
        Self::SlabReclaimable,
        Self::SlabUnreclaimable,
        Self::KernelStack,
        Self::PageTables,
        Self::Percpu,
        Self::Sock,
        Self::Kernel,
        Self::Swap,
    ];

    /// The kernel's enumerator.
    pub(crate) fn kernel_name(self) -> &'static str {
        match self {
            Self::Anon => "NR_ANON_MAPPED",
            Self::File => "NR_FILE_PAGES",
            Self::Shmem => "NR_SHMEM",
            Self::SlabReclaimable => "NR_SLAB_RECLAIMABLE_B",
            Self::SlabUnreclaimable => "NR_SLAB_UNRECLAIMABLE_B",
            Self::KernelStack => "NR_KERNEL_STACK_KB",
            Self::PageTables => "NR_PAGETABLE",
            Self::Percpu => "MEMCG_PERCPU_B",
            Self::Sock => "MEMCG_SOCK",
            Self::Kernel => "MEMCG_KMEM",
            Self::Swap => "MEMCG_SWAP",
        }
    }

    pub(crate) fn unit(self) -> Unit {
        match self {
            Self::SlabReclaimable | Self::SlabUnreclaimable | Self::Percpu => Unit::Bytes,
            Self::KernelStack => Unit::KiB,
            _ => Unit::Pages,
        }
    }

    /// Its key in a cgroup v2 `memory.stat` (hierarchical, bytes).
    pub(crate) fn v2_key(self) -> Option<&'static str> {
        Some(match self {
            Self::Anon => "anon",
            Self::File => "file",
            Self::Shmem => "shmem",
            Self::SlabReclaimable => "slab_reclaimable",
            Self::SlabUnreclaimable => "slab_unreclaimable",
            Self::KernelStack => "kernel_stack",
            Self::PageTables => "pagetables",
            Self::Percpu => "percpu",
            Self::Sock => "sock",
            Self::Kernel => "kernel",
            Self::Swap => return None,
        })
    }

    /// Its hierarchical key in a cgroup v1 `memory.stat` (bytes).
    pub(crate) fn v1_key(self) -> Option<&'static str> {
        Some(match self {
            Self::Anon => "total_rss",
            Self::File => "total_cache",
            Self::Shmem => "total_shmem",
            Self::Swap => "total_swap",
            _ => return None,
        })
    }
}

/// Bytes of `raw` counted in `unit`; negative (per-CPU drift) is 0.
pub(crate) fn to_bytes(raw: i64, unit: Unit, page_size: u64) -> u64 {
    let v = u64::try_from(raw).unwrap_or(0);
    match unit {
        Unit::Pages => v.saturating_mul(page_size),
        Unit::Bytes => v,
        Unit::KiB => v.saturating_mul(1024),
    }
}

/// What BTF and the kernel's configuration say about the array.
#[derive(Clone, Debug, Default)]
pub(crate) struct KernelStats {
    /// `enum node_stat_item`.
    pub node_items: Vec<(String, u32)>,
    /// `enum memcg_stat_item`.
    pub memcg_items: Vec<(String, u32)>,
    /// `enum memcg_memory_event` (the index of `mem_cgroup.memory_events`).
    pub(crate) memory_events: Vec<(String, u32)>,
    /// Entries of `memcg_vmstats.state`.
    pub state_len: usize,
    /// Kernel configuration options that decide the list (`CONFIG_SWAP`,
    /// `CONFIG_NUMA_BALANCING`, `CONFIG_HUGETLB_PAGE`): `None` where the
    /// configuration could not be read.
    pub config: Option<std::collections::BTreeMap<String, bool>>,
}

/// One way the array may be laid out: the index of each item oom-tracer reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StatLayout {
    pub index: Vec<(StatItem, usize)>,
    /// Indices of `MEMCG_MAX`, `MEMCG_OOM`, `MEMCG_OOM_KILL` in `memory_events`.
    pub(crate) events: [Option<usize>; 3],
    /// How it was derived, for the startup line.
    pub how: String,
}

impl StatLayout {
    pub(crate) fn get(&self, item: StatItem) -> Option<usize> {
        self.index
            .iter()
            .find_map(|&(i, at)| (i == item).then_some(at))
    }
}

/// `memcg_node_stat_items[]` of 6.11 and later, without the entries below.
const BASE: [&str; 26] = [
    "NR_INACTIVE_ANON",
    "NR_ACTIVE_ANON",
    "NR_INACTIVE_FILE",
    "NR_ACTIVE_FILE",
    "NR_UNEVICTABLE",
    "NR_SLAB_RECLAIMABLE_B",
    "NR_SLAB_UNRECLAIMABLE_B",
    "WORKINGSET_REFAULT_ANON",
    "WORKINGSET_REFAULT_FILE",
    "WORKINGSET_ACTIVATE_ANON",
    "WORKINGSET_ACTIVATE_FILE",
    "WORKINGSET_RESTORE_ANON",
    "WORKINGSET_RESTORE_FILE",
    "WORKINGSET_NODERECLAIM",
    "NR_ANON_MAPPED",
    "NR_FILE_MAPPED",
    "NR_FILE_PAGES",
    "NR_FILE_DIRTY",
    "NR_WRITEBACK",
    "NR_SHMEM",
    "NR_SHMEM_THPS",
    "NR_FILE_THPS",
    "NR_ANON_THPS",
    "NR_KERNEL_STACK_KB",
    "NR_PAGETABLE",
    "NR_SECONDARY_PAGETABLE",
];

/// Entries appended after `BASE` by some kernels, in order: the items, and
/// the configuration option that decides them (`None`: the kernel's
/// version does, seen only through the array's length).
const OPTIONAL: [(&[&str], Option<&str>); 5] = [
    (&["NR_SWAPCACHE"], Some("CONFIG_SWAP")),
    (&["PGPROMOTE_SUCCESS"], Some("CONFIG_NUMA_BALANCING")),
    (
        &["PGDEMOTE_KSWAPD", "PGDEMOTE_DIRECT", "PGDEMOTE_KHUGEPAGED"],
        None,
    ),
    (&["PGDEMOTE_PROACTIVE"], None),
    (&["NR_HUGETLB"], Some("CONFIG_HUGETLB_PAGE")),
];

/// The layouts this kernel may have, most likely first; empty when none
/// fits (the breakdown then stays off, saying why).
pub(crate) fn candidates(k: &KernelStats) -> Result<Vec<StatLayout>, String> {
    let value = |name: &str| {
        k.node_items
            .iter()
            .chain(&k.memcg_items)
            .find_map(|(n, v)| (n == name).then_some(*v))
    };
    let nr_stat = value("MEMCG_NR_STAT");
    let event = |name: &str| {
        k.memory_events
            .iter()
            .find_map(|(n, v)| (n == name).then_some(*v as usize))
    };
    let events = [
        event("MEMCG_MAX"),
        event("MEMCG_OOM"),
        event("MEMCG_OOM_KILL"),
    ];
    if k.state_len == 0 {
        return Err("kernel BTF has no memcg_vmstats.state".into());
    }
    // Before 6.11: indexed by the enums themselves.
    if nr_stat.is_some_and(|n| n as usize == k.state_len) {
        let index = StatItem::ALL
            .iter()
            .filter_map(|&i| Some((i, value(i.kernel_name())? as usize)))
            .collect();
        return Ok(vec![StatLayout {
            index,
            events,
            how: format!("indexed by the kernel's enums ({} entries)", k.state_len),
        }]);
    }
    let known = |n: &&str| value(n).is_some();
    let base: Vec<&str> = BASE.iter().copied().filter(known).collect();
    let mut memcg: Vec<(String, u32)> = k
        .memcg_items
        .iter()
        .filter(|(n, _)| n != "MEMCG_NR_STAT")
        .cloned()
        .collect();
    memcg.sort_by_key(|(_, v)| *v);
    let mut out = Vec::new();
    for mask in 0u32..(1 << OPTIONAL.len()) {
        let mut list = base.clone();
        let mut fits = true;
        for (bit, (items, option)) in OPTIONAL.iter().enumerate() {
            let on = mask & (1 << bit) != 0;
            let present: Vec<&str> = items.iter().copied().filter(known).collect();
            if on && present.len() != items.len() {
                fits = false;
            }
            if let (Some(opt), Some(cfg)) = (option, &k.config)
                && cfg.get(*opt).copied().unwrap_or(false) != on
            {
                fits = false;
            }
            if on {
                list.extend(present);
            }
        }
        if !fits || list.len() + memcg.len() != k.state_len {
            continue;
        }
        let position = |name: &str| -> Option<usize> {
            list.iter()
                .position(|n| *n == name)
                .or_else(|| Some(list.len() + memcg.iter().position(|(n, _)| n == name)?))
        };
        let index = StatItem::ALL
            .iter()
            .filter_map(|&i| Some((i, position(i.kernel_name())?)))
            .collect();
        out.push(StatLayout {
            index,
            events,
            how: format!(
                "memcg_node_stat_items of {} entries and {} memcg items",
                list.len(),
                memcg.len()
            ),
        });
    }
    if out.is_empty() {
        return Err(format!(
            "memcg_vmstats.state has {} entries, and no list of tracked items this version of oom-tracer knows has that many",
            k.state_len
        ));
    }
    Ok(out)
}

/// `CONFIG_*=y` options of the running kernel, from /proc/config.gz or
/// /boot/config-<release>; `None` where neither is readable.
pub(crate) fn kernel_config(release: &str) -> Option<std::collections::BTreeMap<String, bool>> {
    let text = std::fs::read_to_string(format!("/boot/config-{release}"))
        .ok()
        .or_else(|| gunzip(&std::fs::read("/proc/config.gz").ok()?))?;
    let wanted = [
        "CONFIG_SWAP",
        "CONFIG_NUMA_BALANCING",
        "CONFIG_HUGETLB_PAGE",
    ];
    Some(
        wanted
            .iter()
            .map(|w| {
                let on = text.lines().any(|l| l == format!("{w}=y"));
                ((*w).to_owned(), on)
            })
            .collect(),
    )
}

/// /proc/config.gz, through the system's gzip (no decompressor is linked in).
fn gunzip(bytes: &[u8]) -> Option<String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(bytes).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The enums of this machine's 6.18 (and the array of 40 it has).
    fn k618() -> KernelStats {
        let node = [
            "NR_INACTIVE_ANON",
            "NR_ACTIVE_ANON",
            "NR_INACTIVE_FILE",
            "NR_ACTIVE_FILE",
            "NR_UNEVICTABLE",
            "NR_SLAB_RECLAIMABLE_B",
            "NR_SLAB_UNRECLAIMABLE_B",
            "NR_ISOLATED_ANON",
            "NR_ISOLATED_FILE",
            "WORKINGSET_NODES",
            "WORKINGSET_REFAULT_ANON",
            "WORKINGSET_REFAULT_FILE",
            "WORKINGSET_ACTIVATE_ANON",
            "WORKINGSET_ACTIVATE_FILE",
            "WORKINGSET_RESTORE_ANON",
            "WORKINGSET_RESTORE_FILE",
            "WORKINGSET_NODERECLAIM",
            "NR_ANON_MAPPED",
            "NR_FILE_MAPPED",
            "NR_FILE_PAGES",
            "NR_FILE_DIRTY",
            "NR_WRITEBACK",
            "NR_SHMEM",
            "NR_SHMEM_THPS",
            "NR_SHMEM_PMDMAPPED",
            "NR_FILE_THPS",
            "NR_FILE_PMDMAPPED",
            "NR_ANON_THPS",
            "NR_VMSCAN_WRITE",
            "NR_VMSCAN_IMMEDIATE",
            "NR_DIRTIED",
            "NR_WRITTEN",
            "NR_THROTTLED_WRITTEN",
            "NR_KERNEL_MISC_RECLAIMABLE",
            "NR_FOLL_PIN_ACQUIRED",
            "NR_FOLL_PIN_RELEASED",
            "NR_KERNEL_STACK_KB",
            "NR_PAGETABLE",
            "NR_SECONDARY_PAGETABLE",
            "NR_IOMMU_PAGES",
            "NR_SWAPCACHE",
            "PGPROMOTE_SUCCESS",
            "PGPROMOTE_CANDIDATE",
            "PGPROMOTE_CANDIDATE_NRL",
            "PGDEMOTE_KSWAPD",
            "PGDEMOTE_DIRECT",
            "PGDEMOTE_KHUGEPAGED",
            "PGDEMOTE_PROACTIVE",
            "NR_HUGETLB",
            "NR_BALLOON_PAGES",
            "NR_KERNEL_FILE_PAGES",
        ];
        let memcg = [
            "MEMCG_SWAP",
            "MEMCG_SOCK",
            "MEMCG_PERCPU_B",
            "MEMCG_VMALLOC",
            "MEMCG_KMEM",
            "MEMCG_ZSWAP_B",
            "MEMCG_ZSWAPPED",
            "MEMCG_NR_STAT",
        ];
        KernelStats {
            node_items: node
                .iter()
                .enumerate()
                .map(|(i, n)| ((*n).to_owned(), i as u32))
                .collect(),
            memcg_items: memcg
                .iter()
                .enumerate()
                .map(|(i, n)| ((*n).to_owned(), 51 + i as u32))
                .collect(),
            memory_events: vec![
                ("MEMCG_LOW".into(), 0),
                ("MEMCG_HIGH".into(), 1),
                ("MEMCG_MAX".into(), 2),
                ("MEMCG_OOM".into(), 3),
                ("MEMCG_OOM_KILL".into(), 4),
            ],
            state_len: 40,
            config: Some(
                [
                    ("CONFIG_SWAP", true),
                    ("CONFIG_NUMA_BALANCING", true),
                    ("CONFIG_HUGETLB_PAGE", true),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            ),
        }
    }

    #[test]
    fn the_compact_layout_of_6_18() {
        let c = candidates(&k618()).unwrap();
        assert_eq!(c.len(), 1, "{c:?}");
        let l = &c[0];
        assert_eq!(l.get(StatItem::Anon), Some(14));
        assert_eq!(l.get(StatItem::File), Some(16));
        assert_eq!(l.get(StatItem::Shmem), Some(19));
        assert_eq!(l.get(StatItem::KernelStack), Some(23));
        assert_eq!(l.get(StatItem::PageTables), Some(24));
        // 33 node items, then MEMCG_SWAP, SOCK, PERCPU_B, VMALLOC, KMEM.
        assert_eq!(l.get(StatItem::Swap), Some(33));
        assert_eq!(l.get(StatItem::Kernel), Some(37));
        assert_eq!(l.events, [Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn without_the_configuration_the_length_decides() {
        let mut k = k618();
        k.config = None;
        let c = candidates(&k).unwrap();
        // 33 of 26 + {1, 1, 3, 1, 1}: SWAPCACHE+PROMOTE+DEMOTE×3+PROACTIVE+HUGETLB
        // is the only way to 7 more.
        assert_eq!(c.len(), 1);
        k.state_len = 35;
        let c = candidates(&k).unwrap();
        assert!(c.len() > 1, "ambiguous: the startup check decides");
        k.state_len = 99;
        assert!(candidates(&k).unwrap_err().contains("99 entries"));
    }

    #[test]
    fn before_6_11_the_enums_index() {
        let mut k = k618();
        k.state_len = 58;
        let c = candidates(&k).unwrap();
        assert_eq!(c[0].get(StatItem::Anon), Some(17));
        assert_eq!(c[0].get(StatItem::Kernel), Some(55));
    }

    #[test]
    fn units() {
        assert_eq!(to_bytes(3, Unit::Pages, 4096), 12288);
        assert_eq!(to_bytes(16, Unit::KiB, 4096), 16384);
        assert_eq!(to_bytes(-5, Unit::Bytes, 4096), 0);
    }
}
