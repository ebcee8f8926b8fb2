//! The thread that reads symbol tables (blazesym): parsing `/proc/kallsyms`
//! or a large binary's symbol table takes a few hundred milliseconds the
//! first time, which the drain must not wait for. The drain asks with a
//! deadline and takes what is answered by then; binaries are read ahead
//! (at a process's first growth step, long before its kill) and kallsyms
//! at startup, so that at a kill the answers come from the cache.
use std::{
    path::PathBuf,
    sync::mpsc,
    time::{Duration, Instant},
};

use blazesym::{
    MaybeDefault,
    symbolize::{
        Input, Symbolized, Symbolizer,
        source::{Elf, Kernel, Source},
    },
};

/// What to name.
pub(crate) enum Ask {
    /// Kernel addresses.
    Kernel(Vec<u64>),
    /// File offsets in the ELF file at this path.
    Elf(PathBuf, Vec<u64>),
}

enum Job {
    /// Read these ahead (answers to nobody).
    Warm(Vec<Ask>),
    Name(Vec<Ask>, mpsc::SyncSender<Vec<Vec<Option<String>>>>),
}

/// The drain's handle on the thread.
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    pub(crate) fn start() -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("symbols".into())
            .spawn(move || {
                let symbolizer = Symbolizer::new();
                for job in rx {
                    match job {
                        Job::Warm(asks) => {
                            for a in &asks {
                                let _ = name(&symbolizer, a);
                            }
                        }
                        Job::Name(asks, reply) => {
                            let names = asks.iter().map(|a| name(&symbolizer, a)).collect();
                            let _ = reply.send(names);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("call sites: no thread to name frames ({e}): frames stay unnamed");
        }
        Self { jobs }
    }

    /// Reads these ahead.
    pub(crate) fn warm(&self, asks: Vec<Ask>) {
        let _ = self.jobs.send(Job::Warm(asks));
    }

    /// The names of `asks`, as far as answered by `deadline` (`None` for
    /// each one not answered).
    pub(crate) fn name(&self, asks: Vec<Ask>, deadline: Instant) -> Vec<Vec<Option<String>>> {
        let lens: Vec<usize> = asks.iter().map(Ask::len).collect();
        let (reply, answer) = mpsc::sync_channel(1);
        let unnamed = || lens.iter().map(|&n| vec![None; n]).collect();
        if self.jobs.send(Job::Name(asks, reply)).is_err() {
            return unnamed();
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match answer.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(names) => names,
            Err(_) => {
                tracing::debug!("call sites: names not ready in time; frames left unnamed");
                unnamed()
            }
        }
    }
}

impl Ask {
    fn len(&self) -> usize {
        match self {
            Self::Kernel(a) | Self::Elf(_, a) => a.len(),
        }
    }
}

fn name(symbolizer: &Symbolizer, ask: &Ask) -> Vec<Option<String>> {
    let (src, input) = match ask {
        Ask::Kernel(addrs) => (
            Source::Kernel(Kernel {
                vmlinux: MaybeDefault::None,
                debug_syms: false,
                ..Kernel::default()
            }),
            Input::AbsAddr(addrs.as_slice()),
        ),
        Ask::Elf(path, offsets) => (
            Source::Elf(Elf {
                debug_syms: false,
                ..Elf::new(path)
            }),
            Input::FileOffset(offsets.as_slice()),
        ),
    };
    let names = symbolizer.symbolize(&src, input).unwrap_or_default();
    (0..ask.len())
        .map(|i| match names.get(i) {
            Some(Symbolized::Sym(sym)) => Some(sym.name.to_string()),
            _ => None,
        })
        .collect()
}
