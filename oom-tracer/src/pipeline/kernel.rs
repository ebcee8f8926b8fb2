//! Where the pipeline's records come from: the loaded tracer, or a fake in
//! the pipeline's tests. The pipeline decodes the raw bytes itself.
use oom_tracer_common::{OomEvent, PressureStat};

use crate::{
    bpf::{
        callsites::RawCallsites,
        memstat::StatLayout,
        tracer::{KernelCounters, Tracer, WatchError},
    },
    schema::{HookStat, HookStatus},
};

pub(crate) trait Kernel {
    /// Hands every record in the ring buffer now to `each`, as raw bytes.
    fn drain(&mut self, each: &mut dyn FnMut(&[u8]));
    /// Waits until the kernel wakes the reader.
    async fn readable(&mut self);
    fn counters(&self) -> KernelCounters;
    /// Traces tasks in cgroup `id` and below.
    fn watch(&mut self, id: u64) -> Result<(), WatchError>;
    fn unwatch(&mut self, id: u64);
    fn hooks(&self) -> HookStatus;
    fn startup_ms(&self) -> u64;
    fn hook_stats(&self) -> Vec<HookStat>;
    /// Where this kernel may keep each memcg statistic (see `bpf/memstat.rs`).
    fn stat_layouts(&self) -> Result<Vec<StatLayout>, String>;
    /// Lets task `tgid` ask for its memcg's statistics (or no longer).
    fn probe(&mut self, tgid: u32, on: bool);
    /// Whether a second program reads the tasks of the memcg at each kill
    /// (its record follows the kill's).
    fn has_task_list(&self) -> bool;
    /// The kernel's reclaim sums, per watched memcg.
    fn pressure(&self) -> Vec<(u64, PressureStat)>;
    fn pressure_of(&self, memcg: u64) -> Option<PressureStat>;
    /// The memcg is gone: drop its sums.
    fn forget_pressure(&mut self, memcg: u64);
    /// The kill's call sites as the kernel kept them: the trigger's stacks
    /// and the `top` largest sites of the ramp in `memcgs`. None where call
    /// sites are off.
    fn callsites(&mut self, _e: &OomEvent, _memcgs: &[u64], _top: usize) -> Option<RawCallsites> {
        None
    }
    /// Whether call sites are on.
    fn has_callsites(&self) -> bool {
        false
    }
    /// The memcg is gone: drop its call sites.
    fn forget_callsites(&mut self, _memcg: u64) {}
    /// Process `tgid` ended: its sites go.
    fn process_ended(&mut self, _tgid: u32) {}
    /// A growth step of process `tgid` in `memcg` went to the sum of user
    /// stack `stack_id` (its `alloc` record's).
    fn site_grew(&mut self, _memcg: u64, _tgid: u32, _stack_id: i32) {}
}

impl Kernel for Tracer {
    fn drain(&mut self, each: &mut dyn FnMut(&[u8])) {
        Tracer::drain(self, each);
    }

    async fn readable(&mut self) {
        Tracer::readable(self).await;
    }

    fn counters(&self) -> KernelCounters {
        Tracer::counters(self)
    }

    fn watch(&mut self, id: u64) -> Result<(), WatchError> {
        Tracer::watch(self, id)
    }

    fn unwatch(&mut self, id: u64) {
        Tracer::unwatch(self, id);
    }

    fn hooks(&self) -> HookStatus {
        Tracer::hooks(self).clone()
    }

    fn startup_ms(&self) -> u64 {
        u64::try_from(self.startup().as_millis()).unwrap_or(u64::MAX)
    }

    fn hook_stats(&self) -> Vec<HookStat> {
        Tracer::hook_stats(self)
    }

    fn stat_layouts(&self) -> Result<Vec<StatLayout>, String> {
        Tracer::stat_layouts(self)
    }

    fn probe(&mut self, tgid: u32, on: bool) {
        Tracer::probe(self, tgid, on);
    }

    fn has_task_list(&self) -> bool {
        Tracer::has_task_list(self)
    }

    fn pressure(&self) -> Vec<(u64, PressureStat)> {
        Tracer::pressure(self)
    }

    fn pressure_of(&self, memcg: u64) -> Option<PressureStat> {
        Tracer::pressure_of(self, memcg)
    }

    fn forget_pressure(&mut self, memcg: u64) {
        Tracer::forget_pressure(self, memcg);
    }

    fn callsites(&mut self, e: &OomEvent, memcgs: &[u64], top: usize) -> Option<RawCallsites> {
        Tracer::callsites(self, e, memcgs, top)
    }

    fn forget_callsites(&mut self, memcg: u64) {
        Tracer::forget_callsites(self, memcg);
    }

    fn process_ended(&mut self, tgid: u32) {
        Tracer::process_ended(self, tgid);
    }

    fn site_grew(&mut self, memcg: u64, tgid: u32, stack_id: i32) {
        Tracer::site_grew(self, memcg, tgid, stack_id);
    }

    fn has_callsites(&self) -> bool {
        Tracer::has_callsites(self)
    }
}
