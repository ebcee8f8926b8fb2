//! Where the pipeline's records come from: the loaded tracer, or a fake in
//! the pipeline's tests. The pipeline decodes the raw bytes itself.
use crate::{
    bpf::tracer::{KernelCounters, Tracer, WatchError},
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
}
