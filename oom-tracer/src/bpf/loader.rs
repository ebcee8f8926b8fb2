//! Loading the embedded eBPF object with this kernel's offsets and layouts,
//! attaching its programs, and reading the ring buffer.
use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader, include_bytes_aligned,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
};
use oom_tracer_common::{
    COUNTERS_LEN, Counter, GEN_WATCH, OFFSET_ABSENT, Settings, WATCH_BLOOM,
    decode::{DecodeError, RawEvent, decode},
};
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    hooks::{self, FALLBACKS, Hook, LIFECYCLE, MARK_VICTIM_BTF, MARK_VICTIM_TP, Report},
    offsets::{KernelBtf, OffsetsError, VMLINUX},
};
use crate::{cli::OomSource, record::HookStat, tracefs};

/// Size of aya-log's ring buffer: a few lines (a page-size power of two).
const AYA_LOGS_BYTES: u32 = 16 << 10;

/// The eBPF object built by build.rs (aya-build) from oom-tracer-ebpf.
static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/oom-tracer"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error("parsing kernel BTF for aya")]
    AyaBtf(#[source] aya::BtfError),
    #[error("loading the eBPF object (needs root, or CAP_BPF + CAP_PERFMON)")]
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
    #[error("no OOM source could attach, so no OOM kill can be seen: {report}")]
    NoOomSource { report: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("adding cgroup id {id} to the watch list")]
    Insert {
        id: u64,
        #[source]
        source: aya::maps::MapError,
    },
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub memory_hierarchy: u32,
    pub watch_all: bool,
    /// Record OOM kills and SIGKILLs in every memcg (the node agent).
    pub oom_all: bool,
    pub alloc_step_bytes: u64,
    pub ring_buffer_bytes: u32,
    pub oom_source: OomSource,
    /// Programs not to attach (`--skip-hook`).
    pub skip_hooks: Vec<String>,
    /// Kernel BTF file.
    pub btf_path: std::path::PathBuf,
}

/// Loaded and attached programs, and the maps userspace uses.
pub struct Tracer {
    ring: AsyncFd<RingBuf<MapData>>,
    watched: HashMap<MapData, u64, u8>,
    /// `GEN_WATCH` and `WATCH_BLOOM`, which userspace keeps in step with `watched`.
    shared: Array<MapData, u64>,
    /// The ids in `watched`.
    watched_ids: Vec<u64>,
    counters: PerCpuArray<MapData, u64>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub report: Report,
    pub decode_errors: u64,
    /// Load + attach time.
    pub startup: std::time::Duration,
    // Last: the programs stay attached while the Ebpf lives.
    ebpf: Ebpf,
}

impl Tracer {
    pub fn load(opts: LoadOptions) -> Result<Self, LoadError> {
        let started = std::time::Instant::now();
        let kbtf = KernelBtf::load(&opts.btf_path)?;
        let koffs = kbtf.kernel_offsets()?;
        let mark_victim_has_task = kbtf.tp_arg_is_pointer("mark_victim", 0);
        // rss_stat(struct mm_struct *mm, int member) since 6.2.
        let rss_stat_has_mm = kbtf.tp_arg_is_pointer("rss_stat", 0) == Some(true)
            && kbtf.tp_arg_is_pointer("rss_stat", 1) == Some(false);
        // cgroup_attach_task(struct cgroup *, const char *, struct task_struct *, bool).
        let attach_has_cgroup = kbtf.tp_arg_is_pointer("cgroup_attach_task", 0) == Some(true)
            && kbtf.tp_arg_is_pointer("cgroup_attach_task", 2) == Some(true);
        drop(kbtf);
        let trace_root = tracefs::root()?;
        let layout = tracefs::layout(&trace_root);
        let settings = Settings {
            page_shift: crate::host::page_shift(),
            alloc_step_bytes: opts.alloc_step_bytes.max(1),
            memory_hierarchy: opts.memory_hierarchy,
            watch_all: u32::from(opts.watch_all),
            oom_all: u32::from(opts.oom_all),
            _pad: 0,
        };
        let btf = if opts.btf_path == Path::new(VMLINUX) {
            Btf::from_sys_fs()
        } else {
            Btf::parse_file(&opts.btf_path, aya::Endianness::default())
        }
        .map_err(LoadError::AyaBtf)?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("KOFFS", &koffs, true)
            .override_global("TPL", &layout, true)
            .override_global("SETTINGS", &settings, true)
            .map_max_entries("EVENTS", opts.ring_buffer_bytes)
            // aya-log's ring (128 KiB by default, mapped twice into this
            // process): the programs log only a lost OOM record.
            .map_max_entries("AYA_LOGS", AYA_LOGS_BYTES)
            .load(OBJECT)
            .map_err(LoadError::Load)?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::debug!("eBPF logs unavailable: {e}");
                None
            }
        };

        let mut report = Report::default();
        // The OOM source: tp_btf where the tracepoint passes the victim's
        // task, else the classic tracepoint.
        let tp_reason = match mark_victim_has_task {
            _ if opts.oom_source == OomSource::Tracepoint => {
                report.missing(MARK_VICTIM_BTF, "not selected (--oom-source tracepoint)");
                Some(())
            }
            Some(true) => match hooks::attach(&mut ebpf, &btf, MARK_VICTIM_BTF) {
                Ok(()) => {
                    report.active(MARK_VICTIM_BTF);
                    None
                }
                Err(e) => {
                    report.missing(MARK_VICTIM_BTF, e);
                    Some(())
                }
            },
            Some(false) => {
                report.missing(
                    MARK_VICTIM_BTF,
                    "this kernel's mark_victim passes a pid, not the task (before 6.8)",
                );
                Some(())
            }
            None => {
                report.missing(MARK_VICTIM_BTF, "no btf_trace_mark_victim in kernel BTF");
                Some(())
            }
        };
        if opts.oom_source == OomSource::TpBtf {
            if tp_reason.is_some() {
                report.missing(MARK_VICTIM_TP, "not selected (--oom-source tp-btf)");
            }
        } else if tp_reason.is_some() {
            attach_checked(
                &mut ebpf,
                &btf,
                &trace_root,
                MARK_VICTIM_TP,
                layout.mv_pid,
                &mut report,
            );
        }
        let skipped = |h: Hook| opts.skip_hooks.iter().any(|s| s == h.program);
        for hook in LIFECYCLE {
            if skipped(hook) {
                report.missing(hook, "skipped (--skip-hook)");
            }
            let Some((_, fallback)) = FALLBACKS.iter().find(|(b, _)| b.program == hook.program)
            else {
                if !skipped(hook) {
                    let needed = match hook.program {
                        "cgroup_mkdir" | "cgroup_rmdir" => layout.cg_id,
                        _ => 0,
                    };
                    attach_checked(&mut ebpf, &btf, &trace_root, hook, needed, &mut report);
                }
                continue;
            };
            // tp_btf first; the classic tracepoint where it is refused.
            let (has_args, why_not, needed) = match hook.program {
                "rss_stat" => (
                    rss_stat_has_mm,
                    "this kernel's rss_stat passes no mm (before 6.2)",
                    layout.rss_size,
                ),
                _ => (
                    attach_has_cgroup,
                    "this kernel's cgroup_attach_task passes no cgroup",
                    layout.at_id,
                ),
            };
            if !skipped(hook) && !has_args {
                report.missing(hook, why_not);
            }
            let btf_ok = !skipped(hook)
                && has_args
                && match hooks::attach(&mut ebpf, &btf, hook) {
                    Ok(()) => {
                        report.active(hook);
                        true
                    }
                    Err(e) => {
                        report.missing(hook, e);
                        false
                    }
                };
            if !btf_ok {
                if skipped(*fallback) {
                    report.missing(*fallback, "skipped (--skip-hook)");
                } else {
                    attach_checked(&mut ebpf, &btf, &trace_root, *fallback, needed, &mut report);
                }
            }
        }
        if koffs.memcg_oom_lock == OFFSET_ABSENT {
            tracing::warn!(
                "kernel BTF has no mem_cgroup.oom_lock: oom_kill records cannot name the memcg that hit its limit"
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

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(LoadError::MissingMap { name })
        };
        let ring =
            RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(|source| LoadError::Map {
                name: "EVENTS",
                source,
            })?;
        // SAFETY: the ring buffer owns its fd for as long as the AsyncFd holds it.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| LoadError::AsyncFd(e.into()))?;
        let watched =
            HashMap::try_from(take(&mut ebpf, "WATCHED")?).map_err(|source| LoadError::Map {
                name: "WATCHED",
                source,
            })?;
        let shared =
            Array::try_from(take(&mut ebpf, "SHARED")?).map_err(|source| LoadError::Map {
                name: "SHARED",
                source,
            })?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, "COUNTERS")?).map_err(|source| {
            LoadError::Map {
                name: "COUNTERS",
                source,
            }
        })?;
        drop(btf);
        // Give back the memory BTF parsing used: the agent idles for days.
        crate::host::trim_heap();
        Ok(Self {
            startup,
            ring,
            watched,
            shared,
            watched_ids: Vec::new(),
            counters,
            logger,
            report,
            decode_errors: 0,
            ebpf,
        })
    }

    /// Traces tasks in the cgroup `id` and its descendants.
    pub fn watch(&mut self, id: u64) -> Result<(), WatchError> {
        self.watched
            .insert(id, 1, 0)
            .map_err(|source| WatchError::Insert { id, source })?;
        if !self.watched_ids.contains(&id) {
            self.watched_ids.push(id);
        }
        self.watch_changed();
        Ok(())
    }

    pub fn unwatch(&mut self, id: u64) {
        let _ = self.watched.remove(&id);
        self.watched_ids.retain(|&w| w != id);
        self.watch_changed();
    }

    /// After `watched` changed: the bloom word the programs test before a
    /// lookup, then a new generation, which makes them drop the memcg
    /// verdicts they cached per CPU. Only this thread writes either.
    fn watch_changed(&mut self) {
        let bloom = self
            .watched_ids
            .iter()
            .fold(0, |b, &id| b | oom_tracer_common::watch_bloom_bit(id));
        let generation = self.shared.get(&GEN_WATCH, 0).unwrap_or(0);
        let res = self
            .shared
            .set(WATCH_BLOOM, bloom, 0)
            .and_then(|()| self.shared.set(GEN_WATCH, generation.wrapping_add(1), 0));
        if let Err(e) = res {
            tracing::warn!("the programs may keep a stale watch verdict: {e}");
        }
    }

    /// Waits until the kernel wakes the reader (OOM records force a wakeup).
    pub async fn readable(&mut self) {
        if let Ok(mut guard) = self.ring.readable_mut().await {
            guard.clear_ready();
        }
    }

    /// Takes every record that is in the ring buffer now. Records that do
    /// not decode are counted and logged, never fatal.
    pub fn drain(&mut self, out: &mut Vec<RawEvent>) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    self.decode_errors += 1;
                    log_decode_error(&e, self.decode_errors);
                }
            }
        }
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }

    /// Per-program kernel run time, where `kernel.bpf_stats_enabled` is on
    /// (otherwise the kernel counts nothing and this is empty).
    pub fn hook_stats(&self) -> Vec<HookStat> {
        let mut v: Vec<HookStat> = self
            .ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(HookStat {
                    program: name.to_owned(),
                    run_count: info.run_count(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                })
            })
            .filter(|s| s.run_count > 0)
            .collect();
        v.sort_by(|a, b| a.program.cmp(&b.program));
        v
    }

    /// Kernel-side counters summed over CPUs: (ring buffer full, read errors).
    pub fn counters(&self) -> (u64, u64) {
        let sum = |c: Counter| -> u64 {
            debug_assert!((c as u32) < COUNTERS_LEN);
            self.counters
                .get(&(c as u32), 0)
                .map(|v| v.iter().copied().sum())
                .unwrap_or(0)
        };
        (sum(Counter::RingbufFull), sum(Counter::ReadError))
    }
}

fn log_decode_error(e: &DecodeError, n: u64) {
    // Log the first few, then every thousandth: a bad stream must not flood stderr.
    if n <= 5 || n.is_multiple_of(1000) {
        tracing::warn!("dropped a malformed ring-buffer record ({e}); {n} so far");
    }
}

/// Attaches `hook` if its tracepoint exists and its layout was read.
fn attach_checked(
    ebpf: &mut Ebpf,
    btf: &Btf,
    trace_root: &Path,
    hook: Hook,
    needed_offset: u32,
    report: &mut Report,
) {
    if let hooks::Attach::Tracepoint(cat, name) = hook.attach {
        if !tracefs::has_event(trace_root, cat, name) {
            report.missing(hook, format!("tracepoint {cat}/{name} not in this kernel"));
            return;
        }
        if needed_offset == OFFSET_ABSENT {
            report.missing(
                hook,
                format!("tracepoint {cat}/{name} lacks a field oom-tracer reads"),
            );
            return;
        }
    }
    match hooks::attach(ebpf, btf, hook) {
        Ok(()) => report.active(hook),
        Err(e) => report.missing(hook, e),
    }
}
