//! What `run` tells the pipeline about the containers it runs itself.
use super::{Kernel, Pipeline, PipelineError, lifecycle::Ending};
use crate::{
    pods::{Container, PodAccessor},
    schema::{ExitReason, Restart},
};

/// What `run` tells the pipeline about the containers it runs itself.
impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// `run` spawned `pid` into container `c`'s cgroup `id`. Its exec
    /// record normally started the container already; this covers a
    /// skipped exec hook.
    pub(crate) async fn spawned(&mut self, id: u64, pid: u32) -> Result<(), PipelineError> {
        self.pump().await?;
        if !self.lifecycle.is_tracked(id) {
            let now = self.translator.now();
            self.container_started(id, pid, now, false)?;
        }
        Ok(())
    }

    /// `run` reaped the main process of the container in cgroup `id`. Its
    /// exit record normally ended the container already; this covers a
    /// skipped exit hook. Returns the container's exit reason.
    pub(crate) async fn reaped(
        &mut self,
        id: u64,
        signal: Option<u32>,
        status: Option<u32>,
    ) -> Result<Option<ExitReason>, PipelineError> {
        self.pump().await?;
        if let Some(pid) = self.lifecycle.running_pid(id) {
            let end = Ending {
                pid,
                at: self.translator.now(),
                signal,
                status,
                verdict: None,
                oom_killed: self.analysis.oom_killed_in(id),
            };
            self.container_ended(id, &end)?;
        }
        Ok(self.lifecycle.exit_reason(id))
    }

    /// `run` restarts container `next` (after its back-off): the `restart`
    /// record. The new container's start is then not a restart again.
    pub(crate) async fn restarted(
        &mut self,
        restart: Restart,
        next: &Container,
    ) -> Result<(), PipelineError> {
        self.lifecycle.restart_reported(next);
        self.emit(restart).await
    }
}
