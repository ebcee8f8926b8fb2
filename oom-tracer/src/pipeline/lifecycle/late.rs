//! Restarts of containers whose names came late. A `restart` pairs a new
//! container with the last one of the same pod and name; when the names
//! are not known at the previous container's exit or at the new one's
//! start, both wait here, bounded in time and number, for the names
//! (`Lifecycle::named`), and the `restart` is written when they come.
use std::{collections::VecDeque, time::Duration};

use super::LastExit;
use crate::schema::{ContainerRef, PodRef, Timestamp};

/// How long an exit or a start waits for names: beyond the kubelet's
/// longest back-off (5 minutes), so that the restart after it is paired.
const WAIT: Duration = Duration::from_secs(600);
/// How many exits, and how many starts, wait at most (the oldest goes).
pub(super) const MAX_WAITING: usize = 256;

/// A container that ended while its name was unknown.
#[derive(Debug, Clone)]
pub(super) struct UnkeyedExit {
    pub cgroup: u64,
    pub pod_uid: String,
    pub started: Timestamp,
    pub exit: LastExit,
}

/// A container start whose `restart` is still open: its name is unknown,
/// or the previous container's is.
#[derive(Debug, Clone)]
pub(super) struct OpenStart {
    pub cgroup: u64,
    pub at: Timestamp,
    /// Its names, once known (then it waits for the previous exit's).
    pub named: Option<(PodRef, ContainerRef)>,
}

impl OpenStart {
    fn is(&self, uid: &str, name: &str) -> bool {
        self.named
            .as_ref()
            .is_some_and(|(p, c)| p.uid == uid && c.name.as_deref() == Some(name))
    }
}

#[derive(Debug, Default)]
pub(super) struct Late {
    exits: VecDeque<UnkeyedExit>,
    starts: VecDeque<OpenStart>,
}

/// Drops what waited longer than [`WAIT`] before `now`, then the oldest
/// beyond [`MAX_WAITING`] - 1 (room for one more).
fn prune<T>(q: &mut VecDeque<T>, now: Timestamp, at: impl Fn(&T) -> Timestamp) {
    q.retain(|x| now.since(at(x)) < WAIT);
    while q.len() >= MAX_WAITING {
        q.pop_front();
    }
}

impl Late {
    pub(super) fn exited(&mut self, e: UnkeyedExit) {
        prune(&mut self.exits, e.exit.at, |x| x.exit.at);
        self.exits.push_back(e);
    }

    pub(super) fn opened(&mut self, s: OpenStart) {
        prune(&mut self.starts, s.at, |x| x.at);
        self.starts.push_back(s);
    }

    /// Whether `cgroup` waits for its names here.
    pub(super) fn waits(&self, cgroup: u64) -> bool {
        self.starts
            .iter()
            .any(|s| s.cgroup == cgroup && s.named.is_none())
            || self.exits.iter().any(|e| e.cgroup == cgroup)
    }

    /// When the container in `cgroup` started, if it waits here.
    pub(super) fn start_time(&self, cgroup: u64) -> Option<Timestamp> {
        let start = self.starts.iter().find(|s| s.cgroup == cgroup);
        let exit = self.exits.iter().find(|e| e.cgroup == cgroup);
        start.map(|s| s.at).or(exit.map(|e| e.started))
    }

    /// The open start of `cgroup`, still without names.
    pub(super) fn unnamed_start(&mut self, cgroup: u64) -> Option<&mut OpenStart> {
        self.starts
            .iter_mut()
            .find(|s| s.cgroup == cgroup && s.named.is_none())
    }

    pub(super) fn close(&mut self, cgroup: u64) -> Option<OpenStart> {
        let i = self.starts.iter().position(|s| s.cgroup == cgroup)?;
        self.starts.remove(i)
    }

    /// The exit of `cgroup`, if it waits for names.
    pub(super) fn take_exit(&mut self, cgroup: u64) -> Option<UnkeyedExit> {
        let i = self.exits.iter().position(|e| e.cgroup == cgroup)?;
        self.exits.remove(i)
    }

    /// Whether a container of pod `uid` ended after `after` and up to
    /// `before` without a name: it may be the one a start pairs with.
    pub(super) fn blocks(&self, uid: &str, after: Option<Timestamp>, before: Timestamp) -> bool {
        self.exits
            .iter()
            .any(|e| e.pod_uid == uid && e.exit.at <= before && after.is_none_or(|a| e.exit.at > a))
    }

    /// The start that the exit `e` of container `name` (named just now)
    /// precedes: the first named one of the same pod and name after it,
    /// with no other exit without a name in between.
    pub(super) fn restarted_by(&mut self, e: &UnkeyedExit, name: &str) -> Option<OpenStart> {
        let i = self
            .starts
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is(&e.pod_uid, name) && s.at >= e.exit.at)
            .min_by_key(|(_, s)| s.at)
            .map(|(i, _)| i)?;
        let s = &self.starts[i];
        if self.blocks(&e.pod_uid, Some(e.exit.at), s.at) {
            return None;
        }
        self.starts.remove(i)
    }
}
