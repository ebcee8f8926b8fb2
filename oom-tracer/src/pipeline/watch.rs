//! Which cgroups the kernel side traces: watched cgroups, pod roots,
//! containers found already running.
use std::time::Duration;

use super::{DRAIN_INTERVAL, Kernel, Pipeline, PipelineError};
use crate::{
    cgroup::pod::procs,
    pods::{Learned, PodAccessor},
};

/// Watching cgroups.
impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// Traces cgroup `id` at `path` and below, and reports the mkdir and
    /// rmdir of cgroups there.
    pub(crate) fn watch(&mut self, id: u64, path: &str) -> Result<(), PipelineError> {
        self.kernel.watch(id)?;
        self.translator.index.insert(id, path);
        self.translator.watch_path(path);
        Ok(())
    }

    pub(crate) fn unwatch(&mut self, id: u64) {
        self.kernel.unwatch(id);
    }

    /// Traces the pods under `path`. A root that appears after the startup
    /// (the kubelet or its runtime restarted) may already hold containers
    /// whose processes started before the kernel traced them: they are
    /// found in the cgroup tree, as at the startup.
    pub(super) fn watch_root(&mut self, id: u64, path: &str) -> Result<(), PipelineError> {
        if self.roots.contains(&id) {
            return Ok(());
        }
        if let Err(e) = self.kernel.watch(id) {
            tracing::warn!("{}", crate::errors::chain(&e));
            return Ok(());
        }
        tracing::info!("watching pods under {path}");
        self.roots.push(id);
        self.translator.watch_path(path);
        if !self.discovered {
            return Ok(());
        }
        self.translator.index.scan();
        let found = self.discover_under(Some(path))?;
        if found > 0 {
            tracing::info!("{found} containers already running under {path}");
        }
        Ok(())
    }

    /// Whether a cgroup under which pods live is watched.
    #[cfg_attr(
        all(not(feature = "agent"), not(test)),
        expect(dead_code, reason = "the agent's")
    )]
    pub(crate) fn has_pod_roots(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Looks for new pod roots (the kubelet may start after the agent) and
    /// asks the metadata sources to re-read (answered beside the drain).
    #[cfg_attr(not(feature = "agent"), expect(dead_code, reason = "the agent's"))]
    pub(crate) fn rescan(&mut self) -> Result<(), PipelineError> {
        self.translator.index.scan();
        let roots: Vec<(u64, String)> = self
            .translator
            .index
            .entries()
            .filter(|(_, p)| self.pods.is_pod_root(p))
            .map(|(id, p)| (id, p.to_owned()))
            .collect();
        for (id, path) in roots {
            self.watch_root(id, &path)?;
        }
        self.pods.refresh();
        Ok(())
    }

    /// Waits at most `limit` for the pod sources to answer, draining the ring
    /// buffer meanwhile (the agent's startup: running containers are
    /// reported with their names when the runtime answers in time).
    #[cfg_attr(not(feature = "agent"), expect(dead_code, reason = "the agent's"))]
    pub(crate) async fn await_pods(&mut self, limit: Duration) -> Result<(), PipelineError> {
        self.pods.refresh();
        let end = tokio::time::Instant::now() + limit;
        let mut tick = tokio::time::interval(DRAIN_INTERVAL);
        while !self.pods.answered() {
            tokio::select! {
                () = self.pods.changed() => self.names()?,
                () = tokio::time::sleep_until(end) => break,
                () = self.kernel.readable() => self.pump().await?,
                _ = tick.tick() => self.pump().await?,
            }
        }
        self.pump().await
    }

    /// Containers already running: found in the cgroup tree, reported with
    /// `discovered: true`, their lowest pid taken as the main process.
    /// Returns how many.
    #[cfg_attr(not(feature = "agent"), expect(dead_code, reason = "the agent's"))]
    pub(crate) fn discover(&mut self) -> Result<usize, PipelineError> {
        self.discovered = true;
        self.discover_under(None)
    }

    /// [`Pipeline::discover`], in the cgroups at and below `under` only.
    fn discover_under(&mut self, under: Option<&str>) -> Result<usize, PipelineError> {
        let below = |p: &str| {
            under.is_none_or(|u| p == u || p.strip_prefix(u).is_some_and(|r| r.starts_with('/')))
        };
        let Some(h) = self.translator.index.hierarchy().cloned() else {
            return Ok(0);
        };
        let cgroups: Vec<(u64, String)> = self
            .translator
            .index
            .entries()
            .filter(|(_, p)| below(p))
            .map(|(id, p)| (id, p.to_owned()))
            .collect();
        let mut found = 0;
        for (id, path) in cgroups {
            let Some(&pid) = procs(&h.dir(&path)).iter().min() else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if self.lifecycle.is_tracked(id)
                || self.pods.learn(id, &path, comm.trim()) != Learned::Container
            {
                continue;
            }
            let now = self.translator.now();
            self.container_started(id, pid as u32, now, true)?;
            found += 1;
        }
        Ok(found)
    }
}
