//! Container lifecycles, the same way in both modes: a container starts
//! with the first exec in its cgroup (that process is its main process),
//! ends when the main process exits, and a new container of the same pod
//! and name is a restart. `run` also tells the stage about the processes
//! it spawns and reaps, which covers a skipped exec or exit hook.
use std::collections::HashMap;

use crate::{
    analyse::exit::{container_exit_code, exit_reason},
    pods::Container,
    schema::{Body, ContainerExit, ContainerStart, ExitReason, Restart, Timestamp, Verdict},
};

/// A container cgroup with a main process.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    main_pid: u32,
    started: Timestamp,
    /// How it ended, once it did.
    ended: Option<ExitReason>,
}

/// The end of a previous container of the same pod and name.
#[derive(Debug, Clone, Copy)]
struct LastExit {
    at: Timestamp,
    reason: ExitReason,
}

/// How a main process ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ending {
    pub pid: u32,
    pub at: Timestamp,
    pub signal: Option<u32>,
    pub status: Option<u32>,
    pub verdict: Option<Verdict>,
    /// The OOM killer killed a process of the container during its life.
    pub oom_killed: bool,
}

#[derive(Debug, Default)]
pub(super) struct Lifecycle {
    tracked: HashMap<u64, Tracked>,
    last_exit: HashMap<(String, String), LastExit>,
}

/// Identity of a container across restarts.
fn key(c: &Container) -> Option<(String, String)> {
    Some((c.pod.uid.clone(), c.container.name.clone()?))
}

impl Lifecycle {
    pub(super) fn is_tracked(&self, cgroup: u64) -> bool {
        self.tracked.contains_key(&cgroup)
    }

    /// The main process of the container in `cgroup`, if it is still running.
    pub(super) fn running_pid(&self, cgroup: u64) -> Option<u32> {
        self.tracked
            .get(&cgroup)
            .filter(|t| t.ended.is_none())
            .map(|t| t.main_pid)
    }

    /// How the container in `cgroup` ended, if it did.
    pub(super) fn exit_reason(&self, cgroup: u64) -> Option<ExitReason> {
        self.tracked.get(&cgroup).and_then(|t| t.ended)
    }

    /// Container `c` (cgroup `cgroup`) started with main process `pid`, or
    /// was found running (`discovered`): its `container_start`, and its
    /// `restart` when a container of the same pod and name ended before.
    pub(super) fn started(
        &mut self,
        cgroup: u64,
        c: &Container,
        pid: u32,
        at: Timestamp,
        discovered: bool,
    ) -> Vec<Body> {
        if self.tracked.contains_key(&cgroup) {
            return Vec::new();
        }
        self.tracked.insert(
            cgroup,
            Tracked {
                main_pid: pid,
                started: at,
                ended: None,
            },
        );
        let mut out = vec![Body::ContainerStart(ContainerStart {
            pod: c.pod.clone(),
            container: c.container.clone(),
            cgroup: c.path.clone(),
            pid,
            command: c.command.clone(),
            memory_limit_bytes: c.limit_bytes,
            pod_memory_limit_bytes: c.pod_limit_bytes,
            discovered,
        })];
        let prev = key(c).and_then(|k| self.last_exit.remove(&k));
        if let (false, Some(prev)) = (discovered, prev) {
            out.push(Body::Restart(Restart {
                pod: c.pod.clone(),
                container: c.container.clone(),
                restart_count: c.container.restart_count.unwrap_or(0),
                backoff_ms: at.ms_since(prev.at),
                last_reason: prev.reason,
            }));
        }
        out
    }

    /// A process of container `c` (cgroup `cgroup`) ended: its
    /// `container_exit` if it was the main process.
    pub(super) fn exited(
        &mut self,
        cgroup: u64,
        c: &Container,
        end: &Ending,
    ) -> Option<ContainerExit> {
        let t = self.tracked.get_mut(&cgroup)?;
        if t.ended.is_some() || t.main_pid != end.pid {
            return None;
        }
        let exit_code = container_exit_code(end.signal, end.status);
        let reason = exit_reason(end.oom_killed, exit_code);
        t.ended = Some(reason);
        if let Some(k) = key(c) {
            self.last_exit.insert(k, LastExit { at: end.at, reason });
        }
        Some(ContainerExit {
            pod: c.pod.clone(),
            container: c.container.clone(),
            exit_code,
            signal: end.signal.map(|s| s as i32),
            reason,
            verdict: end.verdict,
            ran_ms: end.at.ms_since(t.started),
        })
    }

    /// `run` restarts the container itself and says so first: the next
    /// start of this pod and name is not reported as a restart again.
    pub(super) fn restart_reported(&mut self, c: &Container) {
        if let Some(k) = key(c) {
            self.last_exit.remove(&k);
        }
    }

    /// The cgroup is gone.
    pub(super) fn removed(&mut self, cgroup: u64) {
        self.tracked.remove(&cgroup);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::pods::fake::example_container;

    fn at(ms: u64) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_millis(1_795_802_400_000 + ms))
    }

    fn container(restarts: u32) -> Container {
        example_container(restarts, 1)
    }

    fn end(pid: u32, ms: u64, signal: Option<u32>, status: Option<u32>, oom: bool) -> Ending {
        Ending {
            pid,
            at: at(ms),
            signal,
            status,
            verdict: None,
            oom_killed: oom,
        }
    }

    #[test]
    fn start_exit_restart() {
        let mut l = Lifecycle::default();
        let c0 = container(0);
        let out = l.started(10, &c0, 7, at(0), false);
        assert_eq!(out.len(), 1, "the first start is no restart");
        assert!(l.started(10, &c0, 8, at(1), false).is_empty(), "once");
        assert!(
            l.exited(10, &c0, &end(8, 5, Some(9), None, true)).is_none(),
            "not the main process"
        );
        let e = l
            .exited(10, &c0, &end(7, 500, Some(9), None, true))
            .unwrap();
        assert_eq!(
            (e.exit_code, e.reason, e.ran_ms),
            (137, ExitReason::OomKilled, 500)
        );
        assert!(
            l.exited(10, &c0, &end(7, 501, Some(9), None, true))
                .is_none()
        );
        let out = l.started(11, &container(1), 9, at(10_600), false);
        let Body::Restart(r) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!((r.restart_count, r.backoff_ms), (1, 10_100));
        assert_eq!(r.last_reason, ExitReason::OomKilled);
    }

    #[test]
    fn a_parent_exiting_137_after_its_childs_oom_kill_is_oomkilled() {
        // The agent used to require the main process to die of SIGKILL.
        let mut l = Lifecycle::default();
        let c = container(0);
        l.started(10, &c, 7, at(0), false);
        let e = l
            .exited(10, &c, &end(7, 100, None, Some(137), true))
            .unwrap();
        assert_eq!(
            (e.exit_code, e.signal, e.reason),
            (137, None, ExitReason::OomKilled)
        );
        l.started(12, &c, 8, at(200), false);
        let e = l
            .exited(12, &c, &end(8, 300, None, Some(0), false))
            .unwrap();
        assert_eq!(e.reason, ExitReason::Completed);
    }

    #[test]
    fn run_reports_its_own_restarts() {
        let mut l = Lifecycle::default();
        let c0 = container(0);
        l.started(10, &c0, 7, at(0), false);
        l.exited(10, &c0, &end(7, 100, Some(9), None, true));
        l.restart_reported(&container(1));
        assert_eq!(l.started(11, &container(1), 8, at(300), false).len(), 1);
        let found = l.started(12, &container(2), 9, at(400), true);
        assert_eq!(found.len(), 1);
        let Body::ContainerStart(s) = &found[0] else {
            panic!()
        };
        assert!(s.discovered);
    }
}
