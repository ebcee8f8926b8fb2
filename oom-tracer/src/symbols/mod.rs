//! Naming the frames of stacks the kernel took: kernel addresses through
//! `/proc/kallsyms`, user addresses through the ELF file they lie in
//! (blazesym: ELF symbols, demangled). A process that grows is remembered
//! (its executable mappings and their build ids, at its first growth
//! step), so that its frames can still be placed once it is gone: named
//! where the file on this host has the same build id, else `module+offset`
//! with the build id. A frame is never named from a file whose build id
//! differs, or is unknown.
pub(crate) mod maps;
mod worker;

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use maps::Mapping;
use worker::{Ask, Worker};

use crate::schema::Frame;

/// Processes remembered at most (their mappings: a few hundred bytes each).
const KNOWN_MAX: usize = 4096;

/// Names frames; remembers the mappings of processes that grow.
pub(crate) struct Symbols {
    /// Started at first use (with call sites on), reading kallsyms first.
    worker: Option<Worker>,
    known: HashMap<u32, Vec<Mapping>>,
    /// Until when the frames of the kill being named may wait for names.
    deadline: Instant,
    /// The kills of one drain share one budget (see [`Symbols::new_drain`]).
    drain_deadline: Option<Instant>,
    /// Tests: every process is taken as gone at its kill.
    pub as_gone: bool,
    /// `/proc` shows the host's pids; without (a container without
    /// hostPID) no process is read: another one may have the pid there.
    host_pids: bool,
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
            known: HashMap::new(),
            deadline: Instant::now(),
            drain_deadline: None,
            as_gone: false,
            host_pids: maps::host_pids(),
        }
    }

    /// The naming thread, started at first use; it reads `/proc/kallsyms`
    /// first (a few hundred milliseconds, before any kill needs it).
    fn worker(&mut self) -> &Worker {
        self.worker.get_or_insert_with(|| {
            let w = Worker::start();
            w.warm(vec![Ask::Kernel(vec![0])]);
            w
        })
    }

    /// Starts the naming thread and waits (at most `wait`) until it has
    /// read `/proc/kallsyms` (at startup: the first kill may come soon).
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

    /// Remembers the mappings of process `tgid`, once (the first growth
    /// step of a process: its binaries are mapped by then), and has their
    /// symbol tables read ahead. Returns whether it was new.
    pub(crate) fn learn(&mut self, tgid: u32) -> bool {
        if !self.host_pids || self.known.contains_key(&tgid) || self.known.len() >= KNOWN_MAX {
            return false;
        }
        let m = maps::read(tgid).unwrap_or_default();
        // Both files a kill may name it from: the process's own, and the
        // same path on this host (for when it is gone).
        let ahead = m
            .iter()
            .flat_map(|m| [maps::live_file(tgid, m), Some(PathBuf::from(&m.path))])
            .flatten()
            .map(|p| Ask::Elf(p, vec![0]))
            .collect();
        self.worker().warm(ahead);
        self.known.insert(tgid, m);
        true
    }

    /// The process ended: its pid may be reused. Returns whether it was
    /// known (it grew).
    pub(crate) fn forget(&mut self, tgid: u32) -> bool {
        self.known.remove(&tgid).is_some()
    }

    /// Kernel frames, named from `/proc/kallsyms` (unnamed where it shows
    /// no addresses: kptr_restrict without CAP_SYSLOG).
    pub(crate) fn kernel(&mut self, ips: &[u64]) -> Vec<Frame> {
        let deadline = self.deadline;
        let names = self
            .worker()
            .name(vec![Ask::Kernel(lookup_addrs(ips))], deadline)
            .pop()
            .unwrap_or_default();
        ips.iter()
            .enumerate()
            .map(|(i, &ip)| Frame {
                addr: format!("{ip:#x}"),
                symbol: names.get(i).cloned().flatten(),
                module: Some("kernel".to_owned()),
                ..Frame::default()
            })
            .collect()
    }

    /// User frames of process `tgid`: from its live mappings, else from
    /// those remembered while it grew.
    pub(crate) fn user(&mut self, tgid: u32, ips: &[u64]) -> Vec<Frame> {
        let live = if self.as_gone || !self.host_pids {
            None
        } else {
            maps::read(tgid)
        };
        let alive = live.is_some();
        if let Some(m) = live {
            self.known.insert(tgid, m);
        }
        let mappings = self.known.get(&tgid).cloned().unwrap_or_default();
        let addrs = lookup_addrs(ips);
        let mut frames: Vec<Frame> = ips
            .iter()
            .map(|ip| Frame {
                addr: format!("{ip:#x}"),
                ..Frame::default()
            })
            .collect();
        // Per mapping: the frames in it, placed here, named in one ask.
        let mut asks = Vec::new();
        let mut which = Vec::new();
        for m in &mappings {
            let idx: Vec<usize> = (0..addrs.len())
                .filter(|&i| addrs[i] >= m.start && addrs[i] < m.end)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let offsets: Vec<u64> = idx.iter().map(|&i| addrs[i] - m.start + m.offset).collect();
            for (&i, &o) in idx.iter().zip(&offsets) {
                frames[i].module = Some(m.path.clone());
                frames[i].offset = Some(o);
                frames[i].build_id.clone_from(&m.build_id);
            }
            if let Some(file) = readable_file(tgid, m, alive) {
                asks.push(Ask::Elf(file, offsets));
                which.push(idx);
            }
        }
        if !asks.is_empty() {
            let deadline = self.deadline;
            let names = self.worker().name(asks, deadline);
            for (idx, names) in which.iter().zip(names) {
                for (&i, n) in idx.iter().zip(names) {
                    frames[i].symbol = n;
                }
            }
        }
        frames
    }
}

/// The address to look up for each frame: the first is where the task
/// was; the others are return addresses, which point past their call (at
/// a function's end, into the next function): one byte back is the call.
fn lookup_addrs(ips: &[u64]) -> Vec<u64> {
    ips.iter()
        .enumerate()
        .map(|(i, &ip)| if i == 0 { ip } else { ip.saturating_sub(1) })
        .collect()
}

/// A file to read mapping `m`'s symbols from: the process's own while it
/// lives; afterwards the same path on this host, if its build id is the
/// one the process had (never a file that may differ).
fn readable_file(tgid: u32, m: &Mapping, alive: bool) -> Option<PathBuf> {
    if alive && let Some(p) = maps::live_file(tgid, m) {
        return Some(p);
    }
    let want = m.build_id.as_ref()?;
    let host = PathBuf::from(&m.path);
    (maps::build_id(&host).as_ref() == Some(want)).then_some(host)
}
