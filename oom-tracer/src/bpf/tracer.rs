//! The loaded tracer: its programs stay attached while it lives; userspace
//! reads the ring buffer, the kernel-side counters and the watch list
//! through it.
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
};
use oom_tracer_common::{
    COUNTERS_LEN, Counter, EventKind, GEN_WATCH, PressureStat, WATCH_BLOOM, decode::decode,
    stale::stale_bytes,
};
use tokio::io::unix::AsyncFd;

use crate::schema::{HookStat, HookStatus};

#[derive(Debug, thiserror::Error)]
#[error("adding cgroup id {id} to the watch list")]
pub(crate) struct WatchError {
    pub id: u64,
    #[source]
    pub source: aya::maps::MapError,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KernelCounters {
    /// Records dropped: the ring buffer was full.
    pub ringbuf_full: u64,
    /// Kernel reads that failed while a record was built.
    pub read_errors: u64,
}

/// Loaded and attached programs, and the maps userspace uses.
pub(crate) struct Tracer {
    pub(super) ring: AsyncFd<RingBuf<MapData>>,
    pub(super) watched: HashMap<MapData, u64, u8>,
    /// `GEN_WATCH` and `WATCH_BLOOM`, which userspace keeps in step with
    /// `watched`.
    pub(super) shared: Array<MapData, u64>,
    /// The ids in `watched`.
    pub(super) watched_ids: Vec<u64>,
    pub(super) counters: PerCpuArray<MapData, u64>,
    pub(super) logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub(super) hooks: HookStatus,
    /// Tasks that asked for their memcg's statistics (`PROBE`).
    pub(super) probe: Option<HashMap<MapData, u32, u8>>,
    /// Reclaim sums per watched memcg (`PRESSURE`), where the hooks attached.
    pub(super) pressure: Option<HashMap<MapData, u64, PressureStat>>,
    /// The layouts of the memcg statistics this kernel may have.
    pub(super) stat_layouts: Result<Vec<super::memstat::StatLayout>, String>,
    /// `mark_victim_tasks` attached.
    pub(super) task_list: bool,
    /// The stack maps, where call sites are on.
    pub(super) callsites: Option<super::callsites::CallsiteMaps>,
    /// The stack maps of a load whose stack-taking programs failed (see
    /// `loader::load`).
    pub(super) callsites_maps: Option<super::callsites::CallsiteMaps>,
    /// Why call sites are off though asked for.
    pub(super) callsites_failed: Option<String>,
    /// Load + attach time.
    pub(super) startup: std::time::Duration,
    /// Records that carried bytes the programs should have zeroed.
    pub(super) stale_records: u64,
    /// Records lost to a full ring buffer, as last read (every drain reads
    /// the counters after its records; a kill uses this, not a read of its own).
    pub(super) losses_seen: std::cell::Cell<u64>,
    // Last: the programs stay attached while the Ebpf lives.
    pub(super) ebpf: Ebpf,
}

impl Tracer {
    /// What attached and what did not, with the reasons.
    pub(crate) fn hooks(&self) -> &HookStatus {
        &self.hooks
    }

    /// A kill's call sites (see `callsites::CallsiteMaps`), where on.
    pub(crate) fn callsites(
        &mut self,
        e: &oom_tracer_common::OomEvent,
        memcgs: &[u64],
        top: usize,
    ) -> Option<super::callsites::RawCallsites> {
        let losses = self.losses_seen.get();
        let maps = self.callsites.as_mut()?;
        let mut raw = maps.sites(memcgs, top, losses);
        if e.flags & oom_tracer_common::OOM_STACKS != 0 {
            let memcg = memcgs.first().copied().unwrap_or(0);
            raw.trigger = Some(maps.trigger(memcg, e.user_stack_id, e.kernel_stack_id));
        }
        Some(raw)
    }

    pub(crate) fn has_callsites(&self) -> bool {
        self.callsites.is_some()
    }

    pub(crate) fn process_ended(&mut self, tgid: u32) {
        if let Some(maps) = self.callsites.as_mut() {
            maps.process_ended(tgid);
        }
    }

    pub(crate) fn site_grew(&mut self, memcg: u64, tgid: u32, stack_id: i32) {
        if let Some(maps) = self.callsites.as_mut() {
            maps.grew(memcg, tgid, stack_id);
        }
    }

    pub(crate) fn forget_callsites(&mut self, memcg: u64) {
        if let Some(maps) = self.callsites.as_mut() {
            maps.forget(memcg);
        }
    }

    /// Time from reading BTF to the last attach.
    pub(crate) fn startup(&self) -> std::time::Duration {
        self.startup
    }

    /// Traces tasks in the cgroup `id` and its descendants.
    pub(crate) fn watch(&mut self, id: u64) -> Result<(), WatchError> {
        self.watched
            .insert(id, 1, 0)
            .map_err(|source| WatchError { id, source })?;
        if !self.watched_ids.contains(&id) {
            self.watched_ids.push(id);
        }
        self.watch_changed();
        Ok(())
    }

    pub(crate) fn unwatch(&mut self, id: u64) {
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
    pub(crate) async fn readable(&mut self) {
        if let Ok(mut guard) = self.ring.readable_mut().await {
            guard.clear_ready();
        }
    }

    /// Hands every record in the ring buffer now to `each`, as raw bytes.
    pub(crate) fn drain(&mut self, each: &mut dyn FnMut(&[u8])) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            check_zeroed(&item, &mut self.stale_records);
            each(&item);
        }
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }

    /// Per-program kernel run time, where `kernel.bpf_stats_enabled` is on
    /// (otherwise the kernel counts nothing and this is empty).
    pub(crate) fn hook_stats(&self) -> Vec<HookStat> {
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

    pub(crate) fn stat_layouts(&self) -> Result<Vec<super::memstat::StatLayout>, String> {
        self.stat_layouts.clone()
    }

    /// Lets task `tgid` ask for its memcg's statistics (or no longer).
    pub(crate) fn probe(&mut self, tgid: u32, on: bool) {
        let Some(m) = self.probe.as_mut() else { return };
        let r = if on {
            m.insert(tgid, 1, 0)
        } else {
            m.remove(&tgid)
        };
        if let Err(e) = r {
            tracing::debug!("PROBE map: {e}");
        }
    }

    pub(crate) fn has_task_list(&self) -> bool {
        self.task_list
    }

    /// The kernel's reclaim sums, per watched memcg.
    pub(crate) fn pressure(&self) -> Vec<(u64, PressureStat)> {
        self.pressure
            .as_ref()
            .map(|m| m.iter().filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    pub(crate) fn pressure_of(&self, memcg: u64) -> Option<PressureStat> {
        self.pressure.as_ref()?.get(&memcg, 0).ok()
    }

    pub(crate) fn forget_pressure(&mut self, memcg: u64) {
        if let Some(m) = self.pressure.as_mut() {
            let _ = m.remove(&memcg);
        }
    }

    /// Kernel-side counters summed over CPUs.
    pub(crate) fn counters(&self) -> KernelCounters {
        let sum = |c: Counter| -> u64 {
            debug_assert!((c as u32) < COUNTERS_LEN);
            self.counters
                .get(&(c as u32), 0)
                .map(|v| v.iter().copied().sum())
                .unwrap_or(0)
        };
        let ringbuf_full = sum(Counter::RingbufFull);
        self.losses_seen.set(ringbuf_full);
        KernelCounters {
            ringbuf_full,
            read_errors: sum(Counter::ReadError),
        }
    }
}

/// A record the programs fill in place in the ring buffer (`emit::reserve`
/// in the eBPF crate) must carry zeroes wherever it says nothing: the
/// programs zero it as a whole first. A record that does not is a bug in
/// the programs (bytes of an earlier record shipped as this one's): said
/// once as a warning, then counted. The record itself goes on.
fn check_zeroed(bytes: &[u8], stale: &mut u64) {
    let kind = bytes
        .first_chunk::<4>()
        .map(|k| EventKind::try_from(u32::from_ne_bytes(*k)));
    let Some(Ok(kind @ (EventKind::Oom | EventKind::OomTasks | EventKind::MemcgProbe))) = kind
    else {
        return;
    };
    // A record that does not decode is the pipeline's to report.
    let Ok(ev) = decode(bytes) else { return };
    let Some(part) = stale_bytes(&ev) else { return };
    *stale += 1;
    if *stale == 1 {
        tracing::warn!(
            "a {kind:?} record carries non-zero bytes in {part}: the eBPF program left \
             ring-buffer bytes unzeroed (a bug; the record is used as it is)"
        );
    } else {
        tracing::debug!("{} records with unzeroed bytes so far", *stale);
    }
}

#[cfg(test)]
mod tests {
    use oom_tracer_common::{EventHeader, OomEvent, decode::as_bytes};

    use super::*;

    fn kill() -> OomEvent {
        OomEvent {
            hdr: EventHeader {
                kind: EventKind::Oom as u32,
                cpu: 0,
                boot_ns: 1,
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_kill_with_stale_statistics_is_counted_and_a_clean_one_is_not() {
        let mut stale = 0;
        check_zeroed(&as_bytes(&kill()), &mut stale);
        assert_eq!(stale, 0);
        let mut k = kill();
        // The victim's own statistics, not read (no OOM_VICTIM_STATS), with
        // an earlier record's bytes in them.
        k.victim_stats.events[3] = 0xdead;
        check_zeroed(&as_bytes(&k), &mut stale);
        check_zeroed(&as_bytes(&k), &mut stale);
        assert_eq!(stale, 2);
        // Other kinds are not looked at; short records are the decoder's.
        check_zeroed(&[1, 0, 0, 0], &mut stale);
        check_zeroed(&[], &mut stale);
        assert_eq!(stale, 2);
    }
}
