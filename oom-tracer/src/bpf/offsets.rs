//! Kernel struct offsets from the running kernel's BTF.
//!
//! aya-ebpf has no CO-RE relocations, so the programs read kernel structs
//! through offsets computed here and passed as the read-only global `KOFFS`.
//! Field names that moved between kernels are looked up under each name
//! (`kernfs_node.__parent` on 6.15+, `parent` before).
use std::path::{Path, PathBuf};

use btf_rs::{Backend, Btf, Type};
use oom_tracer_common::{KernelOffsets, OFFSET_ABSENT};

pub(crate) const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub(crate) enum OffsetsError {
    #[error(
        "kernel BTF not found at {path}; oom-tracer needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, or a BTF file for this kernel given with --btf"
    )]
    NoBtf { path: PathBuf },
    #[error("parsing kernel BTF at {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: btf_rs::Error,
    },
    #[error("kernel BTF has no {what}: cannot attribute tasks to memory cgroups on this kernel")]
    Required { what: String },
}

/// The running kernel's BTF, with the lookups the programs need.
pub(crate) struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub(crate) fn load(path: &Path) -> Result<Self, OffsetsError> {
        if !path.exists() {
            return Err(OffsetsError::NoBtf {
                path: path.to_owned(),
            });
        }
        // Mmap parses lazily (fast start, small footprint) where the kernel
        // allows mapping its BTF; otherwise parse it all.
        let btf = Btf::from_file_with_backend(path, Backend::Mmap)
            .or_else(|_| Btf::from_file(path))
            .map_err(|source| OffsetsError::Parse {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self { btf })
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn underlying(&self, mut t: Type) -> Type {
        for _ in 0..16 {
            match &t {
                Type::Typedef(_)
                | Type::Const(_)
                | Type::Volatile(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    let Some(bt) = t.as_btf_type() else { return t };
                    match self.btf.resolve_chained_type(bt) {
                        Ok(next) => t = next,
                        Err(_) => return t,
                    }
                }
                _ => return t,
            }
        }
        t
    }

    fn struct_named(&self, name: &str) -> Option<btf_rs::Struct> {
        let types = self.btf.resolve_types_by_name(name).ok()?;
        types.into_iter().find_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
    }

    /// Byte offset and type of `field` in `s`, looking into anonymous
    /// struct/union members.
    fn member(&self, s: &btf_rs::Struct, field: &str, depth: u32) -> Option<(u32, Type)> {
        for m in &s.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            let off = m.bit_offset() / 8;
            let ty = self.btf.resolve_chained_type(m).ok()?;
            if name == field {
                return Some((off, ty));
            }
            if name.is_empty() && depth < 4 {
                let inner = match self.underlying(ty) {
                    Type::Struct(i) | Type::Union(i) => i,
                    _ => continue,
                };
                if let Some((o, t)) = self.member(&inner, field, depth + 1) {
                    return Some((off + o, t));
                }
            }
        }
        None
    }

    /// Offset of `field` in `struct strct`, trying each name in `names`.
    pub(crate) fn offset(&self, strct: &str, names: &[&str]) -> Option<u32> {
        self.field(strct, names).map(|(o, _)| o)
    }

    fn field(&self, strct: &str, names: &[&str]) -> Option<(u32, Type)> {
        let s = self.struct_named(strct)?;
        names.iter().find_map(|n| self.member(&s, n, 0))
    }

    fn type_size(&self, t: Type) -> Option<u32> {
        match self.underlying(t) {
            Type::Struct(s) | Type::Union(s) => Some(s.size() as u32),
            Type::Int(i) => Some(i.size() as u32),
            Type::Ptr(_) => Some(8),
            _ => None,
        }
    }

    /// The value of enumerator `name` in `enum enum_name`.
    pub(crate) fn enumerator(&self, enum_name: &str, name: &str) -> Option<u32> {
        for t in self.btf.resolve_types_by_name(enum_name).ok()? {
            if let Type::Enum(e) = t {
                for m in &e.members {
                    if self.btf.resolve_name(m).ok()?.as_str() == name {
                        return Some(m.val());
                    }
                }
            }
        }
        None
    }

    /// Every enumerator of `enum enum_name`, by name.
    pub(crate) fn enumerators(&self, enum_name: &str) -> Vec<(String, u32)> {
        let Ok(types) = self.btf.resolve_types_by_name(enum_name) else {
            return Vec::new();
        };
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Enum(e) => Some(
                    e.members
                        .iter()
                        .filter_map(|m| Some((self.btf.resolve_name(m).ok()?, m.val())))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Offset and element count of the array member `field` of `struct strct`.
    pub(crate) fn array(&self, strct: &str, field: &str) -> Option<(u32, usize)> {
        let (off, ty) = self.field(strct, &[field])?;
        match self.underlying(ty) {
            Type::Array(a) => Some((off, a.len())),
            _ => None,
        }
    }

    /// Offset of `field` in `struct strct`, and whether it is a pointer
    /// (else the struct is embedded).
    pub(crate) fn member_kind(&self, strct: &str, field: &str) -> Option<(u32, bool)> {
        let (off, ty) = self.field(strct, &[field])?;
        Some((off, matches!(self.underlying(ty), Type::Ptr(_))))
    }

    /// Whether parameter `n` (after the `void *__data` that every
    /// `btf_trace_*` prototype starts with) of tracepoint `tp` is a pointer.
    /// `mark_victim` passes a `task_struct *` since Linux 6.8 and only an
    /// `int pid` before.
    pub(crate) fn tp_arg_is_pointer(&self, tp: &str, n: usize) -> Option<bool> {
        let name = format!("btf_trace_{tp}");
        let t = self
            .btf
            .resolve_types_by_name(&name)
            .ok()?
            .into_iter()
            .next()?;
        let Type::Ptr(p) = self.underlying(t) else {
            return None;
        };
        let Type::FuncProto(proto) = self.underlying(self.btf.resolve_chained_type(&p).ok()?)
        else {
            return None;
        };
        let param = proto.parameters.get(n + 1)?;
        let ty = self.btf.resolve_chained_type(param).ok()?;
        Some(matches!(self.underlying(ty), Type::Ptr(_)))
    }

    /// All offsets the programs use. The task → memcg chain is required;
    /// the rest degrade (absent offsets, reported by the caller).
    pub(crate) fn kernel_offsets(&self) -> Result<KernelOffsets, OffsetsError> {
        let req = |strct: &str, names: &[&str]| {
            self.offset(strct, names)
                .ok_or_else(|| OffsetsError::Required {
                    what: format!("struct {strct}.{}", names.join("|")),
                })
        };
        let opt = |strct: &str, names: &[&str]| self.offset(strct, names).unwrap_or(OFFSET_ABSENT);

        let memory_cgrp_id = self
            .enumerator("cgroup_subsys_id", "memory_cgrp_id")
            .ok_or_else(|| OffsetsError::Required {
                what: "enum cgroup_subsys_id.memory_cgrp_id (memory controller)".into(),
            })?;
        let subsys = req("css_set", &["subsys"])?;
        let mut k = KernelOffsets::ABSENT;
        k.task_pid = req("task_struct", &["pid"])?;
        k.task_tgid = req("task_struct", &["tgid"])?;
        k.task_comm = req("task_struct", &["comm"])?;
        k.task_exit_code = opt("task_struct", &["exit_code"]);
        k.task_mm = opt("task_struct", &["mm"]);
        k.task_signal = opt("task_struct", &["signal"]);
        k.task_cgroups = req("task_struct", &["cgroups"])?;
        k.css_set_memory = subsys + memory_cgrp_id * 8;
        k.css_cgroup = req("cgroup_subsys_state", &["cgroup"])?;
        k.css_parent = req("cgroup_subsys_state", &["parent"])?;
        k.cgroup_kn = req("cgroup", &["kn"])?;
        k.kn_id = req("kernfs_node", &["id"])?;
        k.signal_oom_score_adj = opt("signal_struct", &["oom_score_adj"]);
        k.mm_total_vm = opt("mm_struct", &["total_vm"]);
        (k.mm_rss_base, k.mm_rss_stride) = self.rss_layout();
        k.memcg_memory = opt("mem_cgroup", &["memory"]);
        k.memcg_oom_lock = opt("mem_cgroup", &["oom_lock"]);
        k.page_counter_usage = opt("page_counter", &["usage"]);
        k.page_counter_max = opt("page_counter", &["max"]);
        k.page_counter_failcnt = opt("page_counter", &["failcnt"]);
        k.css_serial_nr = opt("cgroup_subsys_state", &["serial_nr"]);
        k.cgroup_subsys_memory = self
            .offset("cgroup", &["subsys"])
            .map_or(OFFSET_ABSENT, |o| o + memory_cgrp_id * 8);
        k.cgroup_level = opt("cgroup", &["level"]);
        k.cgroup_root = opt("cgroup", &["root"]);
        k.root_hierarchy_id = opt("cgroup_root", &["hierarchy_id"]);
        k.task_group_leader = opt("task_struct", &["group_leader"]);
        k.task_start_time = opt("task_struct", &["start_time"]);
        k.task_self_exec_id = opt("task_struct", &["self_exec_id"]);
        self.memcg_stats_offsets(&mut k);
        // MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES live in an
        // anonymous enum (not indexed by name); their values 0..3 have not
        // changed since they were introduced: KernelOffsets::ABSENT has them.
        Ok(k)
    }

    /// Where a memcg's statistics and events are, and the walk over its
    /// tasks; absent pieces switch the breakdown or the task list off.
    fn memcg_stats_offsets(&self, k: &mut KernelOffsets) {
        let opt = |strct: &str, name: &str| self.offset(strct, &[name]).unwrap_or(OFFSET_ABSENT);
        if let Some((off, is_ptr)) = self.member_kind("mem_cgroup", "vmstats") {
            k.memcg_vmstats = off;
            k.memcg_vmstats_is_ptr = u32::from(is_ptr);
        }
        if let Some((off, len)) = self.array("memcg_vmstats", "state") {
            k.vmstats_state = off;
            k.vmstats_state_len = u32::try_from(len).unwrap_or(0);
        }
        k.vmstats_updates = opt("memcg_vmstats", "stats_updates");
        if let Some((off, len)) = self.array("mem_cgroup", "memory_events") {
            k.memcg_events = off;
            k.memcg_events_len = u32::try_from(len).unwrap_or(0);
        }
        if let Some((off, len)) = self.array("mem_cgroup", "memory_events_local")
            && u32::try_from(len).ok() == Some(k.memcg_events_len)
        {
            k.memcg_events_local = off;
        }
        let enumerator = |e: &str, n: &str| self.enumerator(e, n).unwrap_or(OFFSET_ABSENT);
        k.memcg_event_max = enumerator("memcg_memory_event", "MEMCG_MAX");
        k.memcg_event_oom = enumerator("memcg_memory_event", "MEMCG_OOM");
        k.item_file_pages = enumerator("node_stat_item", "NR_FILE_PAGES");
        k.item_shmem = enumerator("node_stat_item", "NR_SHMEM");
        k.cgroup_cset_links = opt("cgroup", "cset_links");
        k.link_cset_link = opt("cgrp_cset_link", "cset_link");
        k.link_cset = opt("cgrp_cset_link", "cset");
        k.cset_tasks = opt("css_set", "tasks");
        k.task_cg_list = opt("task_struct", "cg_list");
        k.css_children = opt("cgroup_subsys_state", "children");
        k.css_sibling = opt("cgroup_subsys_state", "sibling");
    }

    /// What BTF says about `memcg_vmstats.state` (see `memstat.rs`).
    pub(crate) fn memcg_stat_enums(&self) -> super::memstat::KernelStats {
        super::memstat::KernelStats {
            node_items: self.enumerators("node_stat_item"),
            memcg_items: self.enumerators("memcg_stat_item"),
            memory_events: self.enumerators("memcg_memory_event"),
            state_len: self.array("memcg_vmstats", "state").map_or(0, |(_, n)| n),
            config: None,
        }
    }

    /// `mm_struct.rss_stat`: an array of `percpu_counter` since 6.2 (read
    /// `.count`), `struct mm_rss_stat { atomic_long_t count[]; }` before.
    fn rss_layout(&self) -> (u32, u32) {
        let Some((base, ty)) = self.field("mm_struct", &["rss_stat"]) else {
            return (OFFSET_ABSENT, OFFSET_ABSENT);
        };
        match self.underlying(ty) {
            Type::Array(a) => {
                let Ok(elem) = self.btf.resolve_chained_type(&a) else {
                    return (OFFSET_ABSENT, OFFSET_ABSENT);
                };
                let Some(stride) = self.type_size(elem.clone()) else {
                    return (OFFSET_ABSENT, OFFSET_ABSENT);
                };
                let inner = match self.underlying(elem) {
                    Type::Struct(s) => self.member(&s, "count", 0).map_or(0, |(o, _)| o),
                    _ => 0,
                };
                (base + inner, stride)
            }
            Type::Struct(s) => match self.member(&s, "count", 0) {
                Some((o, _)) => (base + o, 8),
                None => (OFFSET_ABSENT, OFFSET_ABSENT),
            },
            _ => (OFFSET_ABSENT, OFFSET_ABSENT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs against this machine's kernel BTF, which every supported host
    /// has; the test fails (naming the file) where it is missing.
    #[test]
    fn offsets_from_running_kernel() {
        let btf =
            KernelBtf::load(Path::new(VMLINUX)).expect("kernel BTF at /sys/kernel/btf/vmlinux");
        let k = btf.kernel_offsets().unwrap();
        assert_ne!(k.task_cgroups, OFFSET_ABSENT);
        assert_ne!(k.kn_id, OFFSET_ABSENT);
        assert_ne!(k.css_serial_nr, OFFSET_ABSENT);
        assert_ne!(k.cgroup_subsys_memory, OFFSET_ABSENT);
        // The css is the first member of mem_cgroup and the usage counter
        // is the first member of page_counter on every kernel since 4.x.
        assert_eq!(k.page_counter_usage, 0);
        assert_eq!(k.mm_anonpages, 1);
        assert_eq!(k.mm_filepages, 0);
        assert!(k.mm_rss_stride == 8 || k.mm_rss_stride >= 32, "{k:?}");
        assert_eq!(k.task_comm % 8, 0);
        assert_eq!(btf.tp_arg_is_pointer("mark_victim", 0), Some(true));
        assert_eq!(btf.tp_arg_is_pointer("signal_generate", 0), Some(false));
        assert_eq!(btf.tp_arg_is_pointer("no_such_tracepoint", 0), None);
        // The statistics the breakdown reads, and the task walk.
        assert_ne!(k.vmstats_state, OFFSET_ABSENT);
        assert!(k.vmstats_state_len >= 20, "{k:?}");
        assert!(k.memcg_events_len >= 5, "{k:?}");
        assert_eq!(k.memcg_event_max, 2);
        assert_eq!(k.memcg_event_oom, 3);
        assert_ne!(k.memcg_events_local, OFFSET_ABSENT);
        assert_ne!(k.root_hierarchy_id, OFFSET_ABSENT);
        assert_ne!(k.item_shmem, OFFSET_ABSENT);
        assert_ne!(k.cset_tasks, OFFSET_ABSENT);
        assert_ne!(k.task_cg_list, OFFSET_ABSENT);
        let layouts = super::super::memstat::candidates(&btf.memcg_stat_enums()).unwrap();
        assert!(!layouts.is_empty());
    }

    #[test]
    fn missing_btf_is_a_clear_error() {
        let err = KernelBtf::load(Path::new("/nonexistent/vmlinux"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
