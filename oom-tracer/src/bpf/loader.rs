//! Loading the embedded eBPF object with this kernel's offsets and layouts,
//! attaching its programs (each attach is a capability probe, see
//! `hooks.rs`), and handing over the maps userspace reads.
use std::{path::Path, time::Instant};

use attach::Attacher;
use aya::{
    Btf, Ebpf, EbpfLoader, include_bytes_aligned,
    maps::{Array, HashMap, PerCpuArray, RingBuf, StackTraceMap},
};
use oom_tracer_common::{
    KernelOffsets, OFFSET_ABSENT, RUNTIME_TASK_LIST, Settings, TracepointLayout,
    names::{
        GLOBAL_KOFFS, GLOBAL_SETTINGS, GLOBAL_TPL, MAP_CALLSITES, MAP_COUNTERS, MAP_EVENTS,
        MAP_PRESSURE, MAP_PROBE, MAP_RUNTIME, MAP_SHARED, MAP_STACKS, MAP_WATCHED,
    },
};
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    callsites::CallsiteMaps,
    hooks::Report,
    offsets::{KernelBtf, OffsetsError, VMLINUX},
    options::LoadOptions,
    tracer::Tracer,
};
use crate::{host, tracefs};

/// Size of aya-log's ring buffer: a few lines (a page-size power of two).
const AYA_LOGS_BYTES: u32 = 16 << 10;

/// The eBPF object built by build.rs (aya-build) from oom-tracer-ebpf.
pub(super) static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/oom-tracer"));

#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error("parsing kernel BTF for aya")]
    AyaBtf(#[source] aya::BtfError),
    #[error("loading the eBPF object{}", missing_caps_hint())]
    Load(#[source] aya::EbpfError),
    #[error("map {name} missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("opening map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("registering the ring buffer with the async runtime")]
    AsyncFd(#[source] std::io::Error),
    #[error(
        "no OOM source could attach, so no OOM kill can be seen: {report}{}",
        missing_caps_hint()
    )]
    NoOomSource { report: String },
}

/// "; missing CAP_PERFMON (effective: CAP_BPF) …" where capabilities the
/// programs need are missing, else nothing.
fn missing_caps_hint() -> String {
    let missing = host::missing_bpf_caps();
    if missing.is_empty() {
        return String::new();
    }
    let have = host::effective_caps();
    let missing: Vec<String> = missing.iter().map(|c| format!("missing {c}")).collect();
    format!(
        "; {} (effective: {}): loading eBPF programs and maps needs CAP_BPF, attaching them \
         to tracepoints and reading kernel memory needs CAP_PERFMON (the DaemonSet adds both; \
         or run as root)",
        missing.join(", "),
        if have.is_empty() {
            "none".to_owned()
        } else {
            have.join(" ")
        }
    )
}

/// What the running kernel's BTF says the programs need to know.
struct KernelFacts {
    offsets: KernelOffsets,
    /// tp_btf/mark_victim passes the victim's task (6.8+ or backports).
    mark_victim_has_task: Option<bool>,
    /// rss_stat(struct mm_struct *mm, int member), since 6.2.
    rss_stat_has_mm: bool,
    /// cgroup_attach_task(struct cgroup *, const char *, struct task_struct *, bool).
    attach_has_cgroup: bool,
    /// cgroup_mkdir/cgroup_rmdir(struct cgroup *, const char *).
    dir_has_cgroup: bool,
    /// Where the memcg statistics may be (checked at startup).
    stat_layouts: Result<Vec<super::memstat::StatLayout>, String>,
}

impl KernelFacts {
    fn read(btf_path: &Path) -> Result<Self, OffsetsError> {
        let kbtf = KernelBtf::load(btf_path)?;
        Ok(Self {
            offsets: kbtf.kernel_offsets()?,
            mark_victim_has_task: kbtf.tp_arg_is_pointer("mark_victim", 0),
            rss_stat_has_mm: kbtf.tp_arg_is_pointer("rss_stat", 0) == Some(true)
                && kbtf.tp_arg_is_pointer("rss_stat", 1) == Some(false),
            attach_has_cgroup: kbtf.tp_arg_is_pointer("cgroup_attach_task", 0) == Some(true)
                && kbtf.tp_arg_is_pointer("cgroup_attach_task", 2) == Some(true),
            dir_has_cgroup: ["cgroup_mkdir", "cgroup_rmdir"].iter().all(|tp| {
                kbtf.tp_arg_is_pointer(tp, 0) == Some(true)
                    && kbtf.tp_arg_is_pointer(tp, 1) == Some(true)
            }),
            stat_layouts: {
                let mut k = kbtf.memcg_stat_enums();
                k.config = super::memstat::kernel_config(&host::kernel_release());
                super::memstat::candidates(&k)
            },
        })
    }
}

/// Loads the object (with call sites or without: `callsites`), attaches
/// what this kernel allows, and returns the tracer. Fails only when no OOM
/// source could attach. See `startup::load`.
pub(super) fn load_with(opts: &LoadOptions, callsites: bool) -> Result<Tracer, LoadError> {
    let started = Instant::now();
    let facts = KernelFacts::read(&opts.btf_path)?;
    let trace_root = tracefs::root()?;
    let layout = tracefs::layout(&trace_root);
    let btf = aya_btf(&opts.btf_path)?;
    let mut ebpf = open(opts, callsites, &facts.offsets, &layout, &btf)?;
    // This thread drains the ring buffer from now on.
    super::wakeup::latency_sensitive();
    // The kernel and aya hold what they need of the object now.
    host::drop_static(OBJECT);
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::debug!("eBPF logs unavailable: {e}");
            None
        }
    };
    let mut attacher = Attacher {
        ebpf: &mut ebpf,
        btf: &btf,
        trace_root: &trace_root,
        layout,
        skip: &opts.skip_hooks,
        report: Report::default(),
        stacks: callsites.then(String::new),
    };
    let btf_oom = attacher.oom_source(opts.oom_source, facts.mark_victim_has_task);
    attacher.lifecycle(&facts);
    let task_list = attacher.analysis(btf_oom);
    let report = attacher.report;
    let stacks_failed = attacher.stacks.filter(|e| !e.is_empty());
    if facts.offsets.memcg_oom_lock == OFFSET_ABSENT {
        tracing::info!(
            "kernel BTF has no mem_cgroup.oom_lock (no CONFIG_MEMCG_V1): the memcg that hit its limit is found by its own OOM count (memory.events.local), else by its usage at the limit"
        );
    }
    let startup = started.elapsed();
    tracing::info!("{}", report.summary());
    tracing::info!(
        "loaded and attached {} programs in {} ms",
        report.status.active.len(),
        startup.as_millis()
    );
    if !report.has_oom_source() {
        return Err(LoadError::NoOomSource {
            report: report.summary(),
        });
    }
    if task_list {
        set_runtime(&mut ebpf, RUNTIME_TASK_LIST)?;
    }
    let callsite_maps = if callsites {
        Some(take_callsite_maps(&mut ebpf)?)
    } else {
        None
    };
    let mut tracer = take_maps(ebpf, logger, report, startup)?;
    // Held aside until `load` knows the stacks were not what failed.
    if stacks_failed.is_some() {
        tracer.callsites_maps = callsite_maps;
    } else {
        tracer.callsites = callsite_maps;
    }
    tracer.callsites_failed = stacks_failed;
    tracer.stat_layouts = facts.stat_layouts;
    tracer.task_list = task_list;
    drop(btf);
    // Give back the memory BTF parsing used: the agent idles for days.
    host::trim_heap();
    Ok(tracer)
}

fn aya_btf(path: &Path) -> Result<Btf, LoadError> {
    if path == Path::new(VMLINUX) {
        Btf::from_sys_fs()
    } else {
        Btf::parse_file(path, aya::Endianness::default())
    }
    .map_err(LoadError::AyaBtf)
}

/// The object, with this kernel's offsets and the settings frozen into its
/// read-only globals (the verifier then sees them as constants).
fn open(
    opts: &LoadOptions,
    callsites: bool,
    offsets: &KernelOffsets,
    layout: &TracepointLayout,
    btf: &Btf,
) -> Result<Ebpf, LoadError> {
    let settings = Settings {
        page_shift: host::page_shift(),
        alloc_step_bytes: opts.alloc_step_bytes.max(1),
        memory_hierarchy: opts.memory_hierarchy,
        probe_signal: libc::SIGWINCH as u32,
        callsites: u32::from(callsites),
        watch_all: 0,
        oom_all: u32::from(opts.oom_all),
        _pad: 0,
    };
    EbpfLoader::new()
        .btf(Some(btf))
        .override_global(GLOBAL_KOFFS, offsets, true)
        .override_global(GLOBAL_TPL, layout, true)
        .override_global(GLOBAL_SETTINGS, &settings, true)
        .map_max_entries(MAP_EVENTS, opts.ring_buffer_bytes)
        // aya-log's ring (128 KiB by default, mapped twice into this
        // process): the programs log only a lost OOM record.
        .map_max_entries("AYA_LOGS", AYA_LOGS_BYTES)
        .load(OBJECT)
        .map_err(LoadError::Load)
}

/// Sets the flags the programs read at run time (`RUNTIME[0]`).
fn set_runtime(ebpf: &mut Ebpf, flags: u32) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(MAP_RUNTIME)
        .ok_or(LoadError::MissingMap { name: MAP_RUNTIME })?;
    let mut rt: Array<_, u32> = Array::try_from(map).map_err(|source| LoadError::Map {
        name: MAP_RUNTIME,
        source,
    })?;
    rt.set(0, flags, 0).map_err(|source| LoadError::Map {
        name: MAP_RUNTIME,
        source,
    })
}

/// The stack maps of call sites.
fn take_callsite_maps(ebpf: &mut Ebpf) -> Result<CallsiteMaps, LoadError> {
    let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::MissingMap { name });
    let map_err = |name| move |source| LoadError::Map { name, source };
    let stacks = StackTraceMap::try_from(take(MAP_STACKS)?).map_err(map_err(MAP_STACKS))?;
    let sums = HashMap::try_from(take(MAP_CALLSITES)?).map_err(map_err(MAP_CALLSITES))?;
    Ok(CallsiteMaps::new(stacks, sums))
}

/// The maps userspace reads, and the tracer that holds them.
fn take_maps(
    mut ebpf: Ebpf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    report: Report,
    startup: std::time::Duration,
) -> Result<Tracer, LoadError> {
    let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadError::MissingMap { name });
    let map_err = |name| move |source| LoadError::Map { name, source };
    let ring = RingBuf::try_from(take(MAP_EVENTS)?).map_err(map_err(MAP_EVENTS))?;
    let watched = HashMap::try_from(take(MAP_WATCHED)?).map_err(map_err(MAP_WATCHED))?;
    let shared = Array::try_from(take(MAP_SHARED)?).map_err(map_err(MAP_SHARED))?;
    let counters = PerCpuArray::try_from(take(MAP_COUNTERS)?).map_err(map_err(MAP_COUNTERS))?;
    let probe = match ebpf.take_map(MAP_PROBE) {
        Some(m) => Some(HashMap::try_from(m).map_err(map_err(MAP_PROBE))?),
        None => None,
    };
    let pressure = match ebpf.take_map(MAP_PRESSURE) {
        Some(m) => Some(HashMap::try_from(m).map_err(map_err(MAP_PRESSURE))?),
        None => None,
    };
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd holds it.
    let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| LoadError::AsyncFd(e.into()))?;
    Ok(Tracer {
        ring,
        watched,
        shared,
        watched_ids: Vec::new(),
        counters,
        logger,
        probe,
        pressure,
        stat_layouts: Ok(Vec::new()),
        task_list: false,
        callsites: None,
        callsites_maps: None,
        callsites_failed: None,
        hooks: report.status,
        startup,
        stale_records: 0,
        losses_seen: std::cell::Cell::new(0),
        ebpf,
    })
}

mod attach;

#[cfg(test)]
mod tests;
