//! Container lifecycles, the same way in both modes: a container starts
//! with the first exec in its cgroup (that process is its main process),
//! ends when the main process exits, and a new container of the same pod
//! and name is a restart. `run` also tells the stage about the processes
//! it spawns and reaps, which covers a skipped exec or exit hook.
//!
//! In the agent the names may come after the start or even after the
//! exit (a slow runtime): the restart then waits for them (`late.rs`) and
//! is written when they come ([`Lifecycle::named`]).
use std::collections::HashMap;

use crate::{
    analyse::exit::{container_exit_code, exit_reason},
    pods::Container,
    schema::{
        Body, ContainerExit, ContainerRef, ContainerStart, ExitReason, PodRef, Restart, Timestamp,
        Verdict,
    },
};

mod late;

use late::{Late, OpenStart, UnkeyedExit};

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
pub(super) struct LastExit {
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
    last_exit: HashMap<Key, LastExit>,
    /// Exits and starts waiting for names.
    late: Late,
}

/// Identity of a container across restarts: pod uid, container name.
type Key = (String, String);

fn key(c: &Container) -> Option<Key> {
    Some((c.pod.uid.clone(), c.container.name.clone()?))
}

/// What a start finds before it.
enum Pair {
    /// The previous container's exit.
    Found(LastExit),
    /// None: the first container of its pod and name.
    First,
    /// Not known yet: a container of the pod ended without a name since.
    Wait,
}

/// The `restart` of container (`pod`, `ctr`) started `at`, after `prev`.
fn restart(pod: &PodRef, ctr: &ContainerRef, at: Timestamp, prev: LastExit) -> Body {
    Body::Restart(Restart {
        pod: pod.clone(),
        container: ctr.clone(),
        restart_count: ctr.restart_count.unwrap_or(0),
        backoff_ms: at.ms_since(prev.at),
        last_reason: prev.reason,
    })
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
        if discovered {
            if let Some(k) = key(c) {
                self.last_exit.remove(&k);
            }
            return out;
        }
        let open = |named| OpenStart { cgroup, at, named };
        let Some(k) = key(c) else {
            // Its restart, if it is one, waits for its names.
            self.late.opened(open(None));
            return out;
        };
        match self.pair(&k, at) {
            Pair::Found(prev) => out.push(restart(&c.pod, &c.container, at, prev)),
            Pair::First => {}
            Pair::Wait => {
                self.late
                    .opened(open(Some((c.pod.clone(), c.container.clone()))));
            }
        }
        out
    }

    /// The exit that container `k`, started `at`, follows (taken).
    fn pair(&mut self, k: &Key, at: Timestamp) -> Pair {
        let last = self.last_exit.get(k).copied().filter(|e| e.at <= at);
        if self.late.blocks(&k.0, last.map(|e| e.at), at) {
            return Pair::Wait;
        }
        match last {
            Some(prev) => {
                self.last_exit.remove(k);
                Pair::Found(prev)
            }
            None => Pair::First,
        }
    }

    /// Whether the container in `cgroup` waits for its names (an exit or
    /// a start whose restart is open).
    pub(super) fn waits_for_names(&self, cgroup: u64) -> bool {
        self.late.waits(cgroup)
    }

    /// The names of these containers came: the `restart` records (with
    /// the new container's start time) that were waiting for them. Taken
    /// in start order, so that an earlier exit is known before a later
    /// start.
    pub(super) fn named(&mut self, mut named: Vec<(u64, Container)>) -> Vec<(Timestamp, Body)> {
        named.sort_by_key(|(id, _)| self.late.start_time(*id));
        let mut out = Vec::new();
        for (id, c) in named {
            let Some(k) = key(&c) else { continue };
            if let Some(s) = self.late.unnamed_start(id) {
                s.named = Some((c.pod.clone(), c.container.clone()));
                let at = s.at;
                match self.pair(&k, at) {
                    Pair::Found(prev) => {
                        self.late.close(id);
                        out.push((at, restart(&c.pod, &c.container, at, prev)));
                    }
                    Pair::First => {
                        self.late.close(id);
                    }
                    Pair::Wait => {}
                }
            }
            let Some(e) = self.late.take_exit(id) else {
                continue;
            };
            if let Some(s) = self.late.restarted_by(&e, &k.1)
                && let Some((pod, ctr)) = &s.named
            {
                out.push((s.at, restart(pod, ctr, s.at, e.exit)));
            } else if self.last_exit.get(&k).is_none_or(|l| l.at < e.exit.at) {
                self.last_exit.insert(k, e.exit);
            }
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
        let last = LastExit { at: end.at, reason };
        match key(c) {
            Some(k) => {
                self.last_exit.insert(k, last);
            }
            // The next start of its pod waits for its names.
            None => self.late.exited(UnkeyedExit {
                cgroup,
                pod_uid: c.pod.uid.clone(),
                started: t.started,
                exit: last,
            }),
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
mod tests;
