//! The binaries that grown processes mapped, held open by device and
//! inode: one symbol table per binary, however many processes (and pids,
//! and mount namespaces) map it, and still there once they are gone.
//!
//! A file is opened once, through the process that maps it, and named
//! through `/proc/self/fd/<n>` from then on: the symbolizer caches it by
//! that path, so the second process of a binary is named from the cache.
//! While the file is held its inode cannot be reused: the same (device,
//! inode) is the same file.
use std::{collections::HashMap, fs::File, os::fd::AsRawFd as _, path::PathBuf};

use super::maps::{self, Mapping};

/// Files held open at most (one descriptor each).
const HELD_MAX: usize = 256;

/// A binary held open.
pub(super) struct Held {
    _file: File,
    /// `/proc/self/fd/<n>`: the file, for as long as it is held.
    pub path: PathBuf,
    pub build_id: Option<String>,
}

/// The binaries held, by (device, inode).
#[derive(Default)]
pub(super) struct Files {
    held: HashMap<(u64, u64), Held>,
}

impl Files {
    /// The file of mapping `m`, opened through live process `tgid` the
    /// first time (`None`: it could not be opened, or too many are held).
    pub(super) fn open(&mut self, tgid: u32, m: &Mapping) -> Option<&Held> {
        if !self.held.contains_key(&m.file) {
            if self.held.len() >= HELD_MAX {
                return None;
            }
            let file = File::open(maps::live_file(tgid, m)?).ok()?;
            let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            let build_id = maps::build_id(&path);
            let held = Held {
                _file: file,
                path,
                build_id,
            };
            self.held.insert(m.file, held);
        }
        self.held.get(&m.file)
    }

    /// The file of mapping `m` if it is held.
    pub(super) fn get(&self, m: &Mapping) -> Option<&Held> {
        self.held.get(&m.file)
    }
}
