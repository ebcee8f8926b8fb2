//! The startup check of the memory breakdown: before trusting where this
//! kernel keeps each memcg statistic (`bpf/memstat.rs`), read them in the
//! kernel for a cgroup that holds known amounts of memory and compare with
//! what the kernel's own `memory.stat` says. A layout that does not match
//! to the byte is not used: wrong numbers are worse than none.
//!
//! The check cannot take the tracer down: the memory is a child process's
//! (`child.rs`), placed in a probe cgroup where one can be made, else left
//! in the tracer's own cgroup (`probe.rs`); the tracer never changes its
//! own cgroup. It runs on a thread beside the tracing, so the `start`
//! record (which says `checking`) and every record after it are not held
//! back: the verdict is written as a `breakdown_check` record when it
//! comes, and applied to `oom_kill` records from then on. An OOM kill read
//! while the check runs is held for the verdict, a bounded time
//! (`handle.rs`), the ring buffer still drained meanwhile, so that it
//! carries the breakdown if the check passes.
use std::{
    path::PathBuf,
    sync::mpsc::{self, Receiver, Sender, TryRecvError},
    thread::JoinHandle,
};

use oom_tracer_common::{MemcgProbeEvent, MemcgStats};

use super::{Kernel, Pipeline, PipelineError};
use crate::{
    bpf::memstat::StatLayout,
    errors,
    pods::PodAccessor,
    schema::{BreakdownCheck, Record},
};

mod child;
mod compare;
mod probe;

pub(crate) use child::{SUBCOMMAND, serve as serve_child};

/// Where the check's probe cgroup is made.
#[derive(Clone, Debug)]
pub(crate) struct ProbeSite {
    /// Its parent, a path of the tracer's view (`/oom-tracer`).
    pub parent: String,
    /// Remove the parent too when the probe leaves it empty (it is
    /// oom-tracer's own: the last agent out removes it).
    pub remove_parent: bool,
}

/// The check's verdict: the layout and what was compared, or why not.
type Verdict = Result<(StatLayout, String), String>;

#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("no list of memcg statistics fits this kernel: {0}")]
    NoLayout(String),
    #[error("no memory cgroup hierarchy")]
    NoHierarchy,
    #[error("starting the check's thread")]
    Thread(#[source] std::io::Error),
    #[error("the check's child process")]
    Child(#[source] std::io::Error),
    #[error("the check's child process: {0}")]
    ChildSaid(String),
    #[error("making the probe cgroup")]
    Cgroup(#[source] crate::cgroup::CgroupError),
    #[error("putting the child into {path}")]
    Place {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel did not answer the probe in 10 s")]
    NoAnswer,
    #[error("tp_btf/signal_generate, which answers the probe, is not attached")]
    NoProbeHook,
    #[error("the tracer stopped before the check ended")]
    Cancelled,
    #[error("the child is in memcg {memcg}, not in the probe cgroup {wanted}")]
    Elsewhere { wanted: String, memcg: u64 },
    #[error("the child's memcg {0} is not in the cgroup hierarchy mounted at {1}")]
    NotInView(u64, PathBuf),
    #[error("reading {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Mismatch(String),
}

/// The check while it runs, and its thread until it has cleaned up.
#[derive(Default)]
pub(crate) struct CheckState {
    running: Option<Running>,
    cleanup: Option<JoinHandle<()>>,
}

struct Running {
    tgid: u32,
    answers: Sender<MemcgStats>,
    verdict: Receiver<Verdict>,
    thread: JoinHandle<()>,
}

impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// Starts the check beside the tracing; `start` will say what is known
    /// of it. `corrupt`: shift the derived layout by one entry (a test's
    /// way to see the check fail).
    pub(crate) fn check_breakdown(&mut self, site: ProbeSite, corrupt: bool) {
        let check = match self.launch_check(site, corrupt) {
            Ok(()) => {
                tracing::info!("memory breakdown at OOM kills: checking, beside the tracing");
                BreakdownCheck {
                    enabled: false,
                    checking: true,
                    detail: "checking, in a child process, beside the tracing".into(),
                }
            }
            Err(e) => verdict(Err(errors::chain(&e))),
        };
        self.breakdown = Some(check);
    }

    fn launch_check(&mut self, site: ProbeSite, corrupt: bool) -> Result<(), CheckError> {
        if !self
            .kernel
            .hooks()
            .active
            .iter()
            .any(|h| h == "tp_btf/signal_generate")
        {
            return Err(CheckError::NoProbeHook);
        }
        let mut layouts = self.kernel.stat_layouts().map_err(CheckError::NoLayout)?;
        if corrupt {
            for l in &mut layouts {
                for (_, i) in &mut l.index {
                    *i += 1;
                }
            }
        }
        let hierarchy = self
            .translator
            .index
            .hierarchy()
            .cloned()
            .ok_or(CheckError::NoHierarchy)?;
        let req = probe::Request {
            layouts,
            hierarchy,
            site,
            page: self.translator.page_size(),
        };
        let tgid = std::process::id();
        let (answers, answers_rx) = mpsc::channel();
        let (verdict_tx, verdict) = mpsc::channel();
        self.kernel.probe(tgid, true);
        let thread = std::thread::Builder::new()
            .name("breakdown-check".into())
            .spawn(move || probe::run(req, answers_rx, verdict_tx))
            .map_err(|e| {
                self.kernel.probe(tgid, false);
                CheckError::Thread(e)
            })?;
        self.check.running = Some(Running {
            tgid,
            answers,
            verdict,
            thread,
        });
        Ok(())
    }

    /// A probe record from the ring buffer: the check's answer.
    pub(super) fn probe_answer(&mut self, p: &MemcgProbeEvent) {
        if let Some(r) = &self.check.running
            && p.tgid == r.tgid
        {
            let _ = r.answers.send(p.stats);
        }
    }

    /// Whether the check is still running.
    pub(super) fn checking(&self) -> bool {
        self.check.running.is_some()
    }

    /// Applies the check's verdict if it has come: the `breakdown_check`
    /// record, the layout for `oom_kill` records.
    pub(super) fn poll_check(&mut self) -> Result<(), PipelineError> {
        let Some(r) = &self.check.running else {
            return Ok(());
        };
        let v = match r.verdict.try_recv() {
            Ok(v) => v,
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Disconnected) => Err("the check ended without a verdict".into()),
        };
        let Some(r) = self.check.running.take() else {
            return Ok(());
        };
        self.kernel.probe(r.tgid, false);
        self.check.cleanup = Some(r.thread);
        self.translator
            .set_layout(v.as_ref().ok().map(|(layout, _)| layout.clone()));
        let check = verdict(v.map(|(_, detail)| detail));
        self.breakdown = Some(check.clone());
        let now = self.translator.now();
        self.write(&mut Record::new(now, check), 0)
    }

    /// At the end: a check still running is stopped; its child and probe
    /// cgroup are removed before this returns.
    pub(super) fn end_check(&mut self) {
        if let Some(r) = &self.check.running {
            self.kernel.probe(r.tgid, false);
            tracing::info!("memory breakdown check stopped before its verdict");
        }
        self.check.end();
    }
}

impl CheckState {
    /// Stops a check still running and waits until its thread has removed
    /// what it made (at most a few seconds: its waits end when the answers
    /// channel closes, and the cgroup's removal is bounded).
    fn end(&mut self) {
        if let Some(r) = self.running.take() {
            drop(r.answers);
            let _ = r.thread.join();
        }
        if let Some(t) = self.cleanup.take() {
            let _ = t.join();
        }
    }
}

/// However the pipeline ends (an error before `stop` too), the check's
/// child and probe cgroup are gone before the process exits.
impl Drop for CheckState {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// A check whose verdict `v` comes after `after` (the pipeline's tests).
    pub(super) fn fake_check(&mut self, after: std::time::Duration, v: Result<(), String>) {
        let (answers, _) = mpsc::channel();
        let (verdict_tx, verdict) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(after);
            let layout = StatLayout {
                index: Vec::new(),
                events: [None; 3],
                how: "test".into(),
            };
            let _ = verdict_tx.send(v.map(|()| (layout, "test".into())));
        });
        self.check.running = Some(Running {
            tgid: 0,
            answers,
            verdict,
            thread,
        });
    }
}

/// The verdict as `start` and `breakdown_check` say it, and its log line.
fn verdict(v: Result<String, String>) -> BreakdownCheck {
    match v {
        Ok(detail) => {
            tracing::info!("memory breakdown at OOM kills: on ({detail})");
            BreakdownCheck {
                enabled: true,
                checking: false,
                detail,
            }
        }
        Err(detail) => {
            tracing::warn!(
                "memory breakdown at OOM kills: off, oom_kill records carry none ({detail})"
            );
            BreakdownCheck {
                enabled: false,
                checking: false,
                detail,
            }
        }
    }
}
