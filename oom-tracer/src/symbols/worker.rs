//! The thread that names frames (blazesym), and everything that reads
//! files for it: `/proc/<pid>/maps`, the binaries, `/proc/kallsyms`.
//! Parsing kallsyms or a large binary's symbol table takes a few hundred
//! milliseconds the first time, and reading a process's mappings a few
//! hundred microseconds: none of it runs on the drain. The drain only
//! sends: a process to learn (at its first growth step, long before its
//! kill), one that ended, and at a kill all of its stacks in one ask,
//! which it waits for until a deadline and takes what is answered by then.
//! Names the thread has kept (a crash loop names the same frames at every
//! kill) the drain takes itself while the thread is idle.
use std::{
    sync::{Arc, Mutex, MutexGuard, mpsc},
    time::{Duration, Instant},
};

use blazesym::symbolize::Symbolizer;

use super::{
    maps,
    namer::{Ask, Namer, warm},
};
use crate::schema::Frame;

enum Job {
    Learn(u32),
    Forget(u32),
    Name(Vec<Ask>, mpsc::SyncSender<Vec<Vec<Frame>>>),
}

/// The drain's handle on the thread.
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
    /// The thread's state: the drain takes names kept there itself when
    /// the thread is idle (no wake-up, no hand-over: at a kill the drain
    /// may have the only free CPU).
    namer: Arc<Mutex<Namer>>,
}

impl Worker {
    /// Starts the thread (`as_gone`: tests, every process is taken as gone
    /// at its kill).
    pub(crate) fn start(as_gone: bool) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        let namer = Arc::new(Mutex::new(Namer::new(as_gone)));
        let mine = namer.clone();
        let spawned = std::thread::Builder::new()
            .name("symbols".into())
            .spawn(move || {
                let sym = Symbolizer::new();
                let lock = || mine.lock().unwrap_or_else(|e| e.into_inner());
                for job in rx {
                    match job {
                        Job::Learn(tgid) => learn(&sym, tgid, &lock),
                        Job::Forget(tgid) => lock().forget(tgid),
                        Job::Name(asks, reply) => {
                            let mut namer = lock();
                            let frames = asks.iter().map(|a| namer.name(&sym, a)).collect();
                            let _ = reply.send(frames);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("call sites: no thread to name frames ({e}): frames stay unnamed");
        }
        Self { jobs, namer }
    }

    pub(crate) fn learn(&self, tgid: u32) {
        let _ = self.jobs.send(Job::Learn(tgid));
    }

    pub(crate) fn forget(&self, tgid: u32) {
        let _ = self.jobs.send(Job::Forget(tgid));
    }

    /// The frames of `asks`, as far as named by `deadline` (a stack not
    /// answered by then has its addresses alone).
    pub(crate) fn name(&self, asks: Vec<Ask>, deadline: Instant) -> Vec<Vec<Frame>> {
        if let Ok(namer) = self.namer.try_lock() {
            let kept: Option<Vec<Vec<Frame>>> = asks.iter().map(|a| namer.name_kept(a)).collect();
            if let Some(frames) = kept {
                return frames;
            }
        }
        let unnamed: Vec<Vec<Frame>> = asks.iter().map(Ask::unnamed).collect();
        let (reply, answer) = mpsc::sync_channel(1);
        if self.jobs.send(Job::Name(asks, reply)).is_err() {
            return unnamed;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match answer.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(frames) => frames,
            Err(_) => {
                tracing::debug!("call sites: names not ready in time; frames left unnamed");
                unnamed
            }
        }
    }
}

/// Learns process `tgid`: its mappings read and its new binaries parsed
/// without the lock, so that the drain may take kept names meanwhile
/// (reading a dying process's mappings waits for the OOM reaper).
fn learn<'a>(sym: &Symbolizer, tgid: u32, lock: &impl Fn() -> MutexGuard<'a, Namer>) {
    if !lock().wants(tgid) {
        return;
    }
    let Some(m) = maps::read(tgid) else { return };
    let fresh = lock().remember(tgid, m);
    for path in fresh {
        warm(sym, path);
    }
}
