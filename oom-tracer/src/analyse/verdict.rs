//! Why a process died of SIGKILL or exited with 137.
//!
//! Exit code 137 and SIGKILL look the same to the runtime whoever sent the
//! signal, which is why "OOMKilled" is often wrong or missing. The kernel
//! knows better: `oom/mark_victim` names the OOM killer's victims, and
//! `signal_generate` names the sender of every SIGKILL. The verdict:
//!
//! - `memcg_oom`: the memcg OOM killer chose this process;
//! - `global_oom`: the system-wide OOM killer chose it;
//! - `sigkill_other`: someone else sent SIGKILL (eviction, a liveness
//!   probe, the runtime stopping the container, a user's `kill -9`);
//! - `exit_137_no_oom`: the process exited with status 137 by itself
//!   (typically a shell reporting a child's SIGKILL) and no OOM kill
//!   happened in its cgroup.
//!
//! A plain `kill -9` is never an OOM: only a pid named by `mark_victim` is.
use std::collections::{HashMap, VecDeque};

use crate::schema::{KilledBy, Verdict};

/// Bound on remembered pids and cgroups.
const KEEP: usize = 4096;

/// What the kernel said before a process exited.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    /// OOM victims by pid: memcg (true) or global OOM.
    victims: HashMap<u32, bool>,
    /// Senders of SIGKILLs by target pid: (from_kernel, sender pid, sender comm).
    senders: HashMap<u32, (bool, u32, String)>,
    /// OOM kills per memcg id, and their kind, for exit 137 of a parent.
    oom_cgroups: HashMap<u64, bool>,
    order: VecDeque<u32>,
    cgroup_order: VecDeque<u64>,
}

impl Verdicts {
    fn remember(&mut self, pid: u32) {
        self.order.push_back(pid);
        while self.order.len() > KEEP {
            if let Some(old) = self.order.pop_front() {
                self.victims.remove(&old);
                self.senders.remove(&old);
            }
        }
    }

    /// `oom/mark_victim` named `pid` (in memcg `memcg`, 0 if unknown).
    pub(super) fn oom_victim(&mut self, pid: u32, memcg: u64, memcg_oom: bool) {
        self.victims.insert(pid, memcg_oom);
        self.remember(pid);
        if memcg != 0 {
            self.oom_cgroups.insert(memcg, memcg_oom);
            self.cgroup_order.push_back(memcg);
            while self.cgroup_order.len() > KEEP {
                if let Some(old) = self.cgroup_order.pop_front() {
                    self.oom_cgroups.remove(&old);
                }
            }
        }
    }

    /// A SIGKILL to `target` was generated.
    pub(super) fn sigkill(
        &mut self,
        target: u32,
        from_kernel: bool,
        sender_pid: u32,
        sender_comm: &str,
    ) {
        // The OOM killer's own SIGKILL precedes mark_victim: keep the first.
        self.senders
            .entry(target)
            .or_insert((from_kernel, sender_pid, sender_comm.to_owned()));
        self.remember(target);
    }

    /// The verdict for a process exit: `signal` that killed it or its
    /// `exit_code`, in memcg `memcg`. `None`: not a SIGKILL or 137.
    pub(super) fn on_exit(
        &mut self,
        pid: u32,
        memcg: u64,
        signal: Option<u32>,
        exit_code: Option<u32>,
    ) -> (Option<Verdict>, Option<KilledBy>) {
        let victim = self.victims.remove(&pid);
        let sender = self.senders.remove(&pid);
        match (signal, exit_code) {
            (Some(9), _) => match victim {
                Some(true) => (Some(Verdict::MemcgOom), None),
                Some(false) => (Some(Verdict::GlobalOom), None),
                None => (
                    Some(Verdict::SigkillOther),
                    sender.map(|(from_kernel, pid, comm)| KilledBy {
                        pid,
                        comm,
                        from_kernel,
                    }),
                ),
            },
            (None, Some(137)) => match self.oom_cgroups.get(&memcg) {
                // A parent reporting its OOM-killed child's status.
                Some(true) => (Some(Verdict::MemcgOom), None),
                Some(false) => (Some(Verdict::GlobalOom), None),
                None => (Some(Verdict::Exit137NoOom), None),
            },
            _ => (None, None),
        }
    }

    /// A memcg is gone: forget its OOM history.
    pub(super) fn cgroup_removed(&mut self, memcg: u64) {
        self.oom_cgroups.remove(&memcg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_victim_is_memcg_oom() {
        let mut v = Verdicts::default();
        v.sigkill(10, true, 10, "stress");
        v.oom_victim(10, 5, true);
        assert_eq!(
            v.on_exit(10, 5, Some(9), None),
            (Some(Verdict::MemcgOom), None)
        );
    }

    #[test]
    fn plain_kill_9_is_never_an_oom() {
        let mut v = Verdicts::default();
        v.sigkill(11, false, 99, "bash");
        let (verdict, by) = v.on_exit(11, 5, Some(9), None);
        assert_eq!(verdict, Some(Verdict::SigkillOther));
        assert_eq!(
            by,
            Some(KilledBy {
                pid: 99,
                comm: "bash".into(),
                from_kernel: false
            })
        );
        // Even in a cgroup that had an OOM kill of another process.
        v.oom_victim(12, 5, true);
        v.sigkill(13, false, 1, "containerd-shim");
        assert_eq!(
            v.on_exit(13, 5, Some(9), None).0,
            Some(Verdict::SigkillOther)
        );
    }

    #[test]
    fn global_and_exit_137() {
        let mut v = Verdicts::default();
        v.oom_victim(20, 0, false);
        assert_eq!(v.on_exit(20, 0, Some(9), None).0, Some(Verdict::GlobalOom));
        assert_eq!(
            v.on_exit(21, 7, None, Some(137)).0,
            Some(Verdict::Exit137NoOom)
        );
        v.oom_victim(22, 7, true);
        assert_eq!(
            v.on_exit(23, 7, None, Some(137)).0,
            Some(Verdict::MemcgOom),
            "a shell reporting its child's OOM kill"
        );
        assert_eq!(v.on_exit(24, 7, None, Some(0)).0, None);
        assert_eq!(v.on_exit(25, 7, Some(15), None).0, None);
        v.cgroup_removed(7);
        assert_eq!(
            v.on_exit(26, 7, None, Some(137)).0,
            Some(Verdict::Exit137NoOom)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut v = Verdicts::default();
        for pid in 0..(KEEP as u32 * 3) {
            v.sigkill(pid, false, 1, "x");
        }
        assert!(v.senders.len() <= KEEP);
    }
}
