//! Naming the frames of stacks the kernel took: kernel addresses through
//! `/proc/kallsyms`, user addresses through the ELF file they lie in
//! (blazesym: ELF symbols, demangled). A process that grows is remembered
//! (its executable mappings, at its first growth step) and the binaries it
//! mapped are held open (`files.rs`), so that its frames can still be
//! placed and named once it is gone. A frame is never named from a file
//! that may differ from the one the process mapped; one that cannot be
//! named stays `module+offset` with the build id.
//!
//! All of it runs on a thread of its own (`worker.rs`): the drain only
//! sends, and at a kill waits for the names until a deadline.
mod files;
pub(crate) mod maps;
mod namer;
mod worker;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

pub(crate) use namer::Ask;
use worker::Worker;

use crate::schema::Frame;

/// Processes remembered at most (the naming thread keeps their mappings).
const LEARNED_MAX: usize = 4096;

/// The drain's side of naming: what it asks the naming thread, and until
/// when it waits for the answer. Nothing here reads a file.
pub(crate) struct Symbols {
    /// Started at first use (with call sites on), reading kallsyms first.
    worker: Option<Worker>,
    /// Processes whose mappings the thread was asked to remember.
    learned: HashSet<u32>,
    /// Until when the frames of the kill being named may wait for names.
    deadline: Instant,
    /// The kills of one drain share one budget (see [`Symbols::new_drain`]).
    drain_deadline: Option<Instant>,
    /// Tests: every process is taken as gone at its kill.
    pub as_gone: bool,
}

impl Default for Symbols {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbols {
    pub(crate) fn new() -> Self {
        Self {
            worker: None,
            learned: HashSet::new(),
            deadline: Instant::now(),
            drain_deadline: None,
            as_gone: false,
        }
    }

    /// The naming thread, started at first use.
    fn worker(&mut self) -> &Worker {
        let as_gone = self.as_gone;
        self.worker.get_or_insert_with(|| Worker::start(as_gone))
    }

    /// Starts the naming thread and waits (at most `wait`) until it has
    /// read `/proc/kallsyms` (a few hundred milliseconds, at startup: the
    /// first kill may come soon).
    pub(crate) fn warm(&mut self, wait: Duration) {
        let started = Instant::now();
        let _ = self
            .worker()
            .name(vec![Ask::Kernel(vec![0])], started + wait);
        tracing::debug!(
            "call sites: kernel symbols read in {} ms",
            started.elapsed().as_millis()
        );
    }

    /// A drain of the ring buffer begins: the kills it reads wait for
    /// names at most `budget` together, so a burst of kills does not hold
    /// the drain `budget` per kill.
    pub(crate) fn new_drain(&mut self, budget: Duration) {
        self.drain_deadline = Some(Instant::now() + budget);
    }

    /// The frames of one kill may wait for names this long, in all, and no
    /// longer than the drain's budget.
    pub(crate) fn begin(&mut self, budget: Duration) {
        let own = Instant::now() + budget;
        self.deadline = self.drain_deadline.map_or(own, |d| d.min(own));
    }

    /// Has the mappings of process `tgid` remembered and its binaries read
    /// ahead, once (its first growth step), beside the drain.
    pub(crate) fn learn(&mut self, tgid: u32) {
        if self.learned.contains(&tgid) || self.learned.len() >= LEARNED_MAX {
            return;
        }
        self.learned.insert(tgid);
        self.worker().learn(tgid);
    }

    /// The process ended: its pid may be reused.
    pub(crate) fn forget(&mut self, tgid: u32) {
        if self.learned.remove(&tgid)
            && let Some(w) = &self.worker
        {
            w.forget(tgid);
        }
    }

    /// The frames of every stack of a kill, in one ask: named as far as
    /// the thread answers by the kill's deadline.
    pub(crate) fn name(&mut self, asks: Vec<Ask>) -> Vec<Vec<Frame>> {
        if asks.is_empty() {
            return Vec::new();
        }
        let deadline = self.deadline;
        self.worker().name(asks, deadline)
    }
}
