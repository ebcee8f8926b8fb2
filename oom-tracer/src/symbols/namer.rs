//! What the naming thread keeps and does: the mappings of processes that
//! grew, the binaries they mapped (held open), and blazesym's symbolizer,
//! whose caches make the second naming of a binary cost microseconds.
use std::{collections::HashMap, path::PathBuf};

use blazesym::{
    MaybeDefault,
    symbolize::{
        Input, Symbolized, Symbolizer,
        source::{Elf, Kernel, Source},
    },
};

use super::{
    files::Files,
    maps::{self, Mapping},
};
use crate::schema::Frame;

/// Processes remembered at most (their mappings: a few hundred bytes each).
const KNOWN_MAX: usize = 4096;

/// One stack to name.
pub(crate) enum Ask {
    /// Kernel addresses.
    Kernel(Vec<u64>),
    /// User addresses of process `tgid`.
    User(u32, Vec<u64>),
}

impl Ask {
    /// The frames with their addresses alone (what a stack not named in
    /// time carries).
    pub(crate) fn unnamed(&self) -> Vec<Frame> {
        let (Self::Kernel(ips) | Self::User(_, ips)) = self;
        ips.iter()
            .map(|ip| Frame {
                addr: format!("{ip:#x}"),
                ..Frame::default()
            })
            .collect()
    }
}

/// Names kept at most (kernel addresses and file offsets), about 100
/// bytes each; the cache starts over when full.
const NAMES_MAX: usize = 65_536;

/// Where a name was looked up: a kernel address, or an offset in a file
/// held open (device, inode).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    Kernel(u64),
    File((u64, u64), u64),
}

/// What the naming thread keeps (its symbolizer, which must stay on that
/// thread, is passed in).
pub(super) struct Namer {
    /// Names looked up already: a crash loop's kills name the same frames
    /// again, in a microsecond instead of blazesym's tens.
    names: HashMap<Place, Option<String>>,
    known: HashMap<u32, Vec<Mapping>>,
    files: Files,
    /// Tests: every process is taken as gone at its kill.
    as_gone: bool,
    /// `/proc` shows the host's pids; without (a container without
    /// hostPID) no process is read: another one may have the pid there.
    host_pids: bool,
}

impl Namer {
    pub(super) fn new(as_gone: bool) -> Self {
        Self {
            names: HashMap::new(),
            known: HashMap::new(),
            files: Files::default(),
            as_gone,
            host_pids: maps::host_pids(),
        }
    }

    /// Whether process `tgid` is to be learned (its mappings read).
    pub(super) fn wants(&self, tgid: u32) -> bool {
        self.host_pids && self.known.len() < KNOWN_MAX && !self.known.contains_key(&tgid)
    }

    /// Remembers the mappings `m` of live process `tgid` (read at its first
    /// growth step: its binaries are mapped by then) and holds its binaries
    /// open. Returns the files held anew, whose symbol tables are to be
    /// read ahead ([`warm`]).
    pub(super) fn remember(&mut self, tgid: u32, m: Vec<Mapping>) -> Vec<PathBuf> {
        let fresh = self.hold(tgid, &m);
        self.known.insert(tgid, m);
        fresh
    }

    /// Process `tgid` ended: its pid may be reused.
    pub(super) fn forget(&mut self, tgid: u32) {
        self.known.remove(&tgid);
    }

    /// Holds the binaries of live process `tgid`'s mappings `m`; returns
    /// those held anew.
    fn hold(&mut self, tgid: u32, m: &[Mapping]) -> Vec<PathBuf> {
        let mut fresh = Vec::new();
        for map in m {
            let new = self.files.get(map).is_none();
            if let Some(f) = self.files.open(tgid, map)
                && new
            {
                fresh.push(f.path.clone());
            }
        }
        fresh
    }

    /// The frames of `ask` if every one of them is named from what is kept
    /// already (no file read, no symbol table parsed): what the drain may
    /// take itself, in microseconds, without waking this thread.
    pub(super) fn name_kept(&self, ask: &Ask) -> Option<Vec<Frame>> {
        let mut frames = ask.unnamed();
        match ask {
            Ask::Kernel(ips) => {
                for (f, a) in frames.iter_mut().zip(lookup_addrs(ips)) {
                    f.symbol = self.names.get(&Place::Kernel(a))?.clone();
                    f.module = Some("kernel".to_owned());
                }
            }
            Ask::User(tgid, ips) => {
                let mappings = self.known.get(tgid)?;
                for (f, a) in frames.iter_mut().zip(lookup_addrs(ips)) {
                    let m = mappings.iter().find(|m| a >= m.start && a < m.end)?;
                    let held = self.files.get(m)?;
                    let offset = a - m.start + m.offset;
                    f.symbol = self.names.get(&Place::File(m.file, offset))?.clone();
                    f.module = Some(m.path.clone());
                    f.offset = Some(offset);
                    f.build_id.clone_from(&held.build_id);
                }
            }
        }
        Some(frames)
    }

    pub(super) fn name(&mut self, sym: &Symbolizer, ask: &Ask) -> Vec<Frame> {
        match ask {
            Ask::Kernel(ips) => self.kernel(sym, ips),
            Ask::User(tgid, ips) => self.user(sym, *tgid, ips),
        }
    }

    /// Kernel frames, named from `/proc/kallsyms` (unnamed where it shows
    /// no addresses: kptr_restrict without CAP_SYSLOG).
    fn kernel(&mut self, sym: &Symbolizer, ips: &[u64]) -> Vec<Frame> {
        let src = Source::Kernel(Kernel {
            vmlinux: MaybeDefault::None,
            debug_syms: false,
            ..Kernel::default()
        });
        let addrs = lookup_addrs(ips);
        let places: Vec<Place> = addrs.iter().map(|&a| Place::Kernel(a)).collect();
        let names = self.cached(&places, || {
            names(sym, &src, Input::AbsAddr(&addrs), addrs.len())
        });
        ips.iter()
            .zip(names)
            .map(|(&ip, symbol)| Frame {
                addr: format!("{ip:#x}"),
                symbol,
                module: Some("kernel".to_owned()),
                ..Frame::default()
            })
            .collect()
    }

    /// User frames of process `tgid`: placed in the mappings remembered
    /// while it grew, else in its live ones, and named from the binary held open
    /// (the same file, wherever it is now, and once the process is gone).
    /// A frame is never named from another file: one not held is named
    /// only while the process lives.
    fn user(&mut self, sym: &Symbolizer, tgid: u32, ips: &[u64]) -> Vec<Frame> {
        let addrs = lookup_addrs(ips);
        // The mappings remembered while it grew, if they place every frame
        // (reading a victim's maps waits for the OOM reaper: milliseconds);
        // else its live ones, while it lives.
        let placed = self.known.get(&tgid).is_some_and(|m| {
            addrs
                .iter()
                .all(|&a| m.iter().any(|m| a >= m.start && a < m.end))
        });
        let live = if placed || self.as_gone || !self.host_pids {
            None
        } else {
            maps::read(tgid)
        };
        let alive = placed || live.is_some();
        if let Some(m) = live {
            for path in self.remember(tgid, m) {
                warm(sym, path);
            }
        }
        let mappings = self.known.get(&tgid).cloned().unwrap_or_default();
        let mut frames = Ask::User(tgid, ips.to_vec()).unnamed();
        for m in &mappings {
            let idx: Vec<usize> = (0..addrs.len())
                .filter(|&i| addrs[i] >= m.start && addrs[i] < m.end)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let offsets: Vec<u64> = idx.iter().map(|&i| addrs[i] - m.start + m.offset).collect();
            // Not held (too many files held): through the process, while
            // it lives.
            let (names, build_id) = match self.files.get(m) {
                Some(h) => {
                    let (path, id) = (h.path.clone(), h.build_id.clone());
                    let places: Vec<Place> =
                        offsets.iter().map(|&o| Place::File(m.file, o)).collect();
                    (self.cached(&places, || elf(sym, path, &offsets)), id)
                }
                None if alive => {
                    let f = maps::live_file(tgid, m);
                    let id = f.as_deref().and_then(maps::build_id);
                    let names = f.map(|f| elf(sym, f, &offsets));
                    (names.unwrap_or_else(|| vec![None; offsets.len()]), id)
                }
                None => (vec![None; offsets.len()], None),
            };
            for ((&i, &o), symbol) in idx.iter().zip(&offsets).zip(names) {
                let f = &mut frames[i];
                f.module = Some(m.path.clone());
                f.offset = Some(o);
                f.build_id.clone_from(&build_id);
                f.symbol = symbol;
            }
        }
        frames
    }

    /// The names of `places`, from the cache where all of them are there,
    /// else from `look` (which names them all, in order), then cached.
    fn cached(
        &mut self,
        places: &[Place],
        look: impl FnOnce() -> Vec<Option<String>>,
    ) -> Vec<Option<String>> {
        let hit: Option<Vec<Option<String>>> =
            places.iter().map(|p| self.names.get(p).cloned()).collect();
        if let Some(names) = hit {
            return names;
        }
        let names = look();
        if self.names.len() + places.len() > NAMES_MAX {
            self.names.clear();
        }
        for (p, n) in places.iter().zip(&names) {
            self.names.insert(*p, n.clone());
        }
        names
    }
}

/// Reads the symbol table of the ELF file at `path` into `sym`'s cache.
pub(super) fn warm(sym: &Symbolizer, path: PathBuf) {
    let _ = elf(sym, path, &[0]);
}

/// Names file offsets in the ELF file at `path`.
fn elf(sym: &Symbolizer, path: PathBuf, offsets: &[u64]) -> Vec<Option<String>> {
    let src = Source::Elf(Elf {
        debug_syms: false,
        ..Elf::new(path)
    });
    names(sym, &src, Input::FileOffset(offsets), offsets.len())
}

fn names(
    sym: &Symbolizer,
    src: &Source<'_>,
    input: Input<&[u64]>,
    n: usize,
) -> Vec<Option<String>> {
    let names = sym.symbolize(src, input).unwrap_or_default();
    (0..n)
        .map(|i| match names.get(i) {
            Some(Symbolized::Sym(s)) => Some(s.name.to_string()),
            _ => None,
        })
        .collect()
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
