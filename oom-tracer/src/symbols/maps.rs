//! A process's executable mappings, read from `/proc/<pid>/maps`, with
//! each file's build id: what names its addresses after it is gone.
use std::path::{Path, PathBuf};

/// One executable mapping of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// The file's device and inode (`/proc/<pid>/maps`): the same file
    /// in every process that maps it, whatever its path there.
    pub file: (u64, u64),
    /// The path as the process sees it (in its mount namespace).
    pub path: String,
    /// The file's GNU build id, hex, where it has one and could be read.
    pub build_id: Option<String>,
}

/// The executable, file-backed mappings of `/proc/<pid>/maps` text.
pub(crate) fn parse(maps: &str) -> Vec<Mapping> {
    maps.lines().filter_map(parse_line).collect()
}

/// `start-end perms offset dev inode path`, executable and with a path.
fn parse_line(line: &str) -> Option<Mapping> {
    let mut f = line.split_ascii_whitespace();
    let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
    let (dev, inode) = (f.next()?, f.next()?);
    let path = f.collect::<Vec<_>>().join(" ");
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        file: (parse_dev(dev)?, inode.parse().ok()?),
        path,
        build_id: None,
    })
}

/// `major:minor`, hex, as one number.
fn parse_dev(dev: &str) -> Option<u64> {
    let (major, minor) = dev.split_once(':')?;
    Some((u64::from_str_radix(major, 16).ok()? << 32) | u64::from_str_radix(minor, 16).ok()?)
}

/// The inode of the initial pid namespace (`PROC_PID_INIT_INO`), the same
/// on every kernel.
const INIT_PID_NS: &str = "pid:[4026531836]";

/// Whether this process sees the host's pids (the initial pid namespace):
/// only then is `/proc/<pid>` the process the kernel's record names.
pub(crate) fn host_pids() -> bool {
    std::fs::read_link("/proc/self/ns/pid").is_ok_and(|l| l.as_os_str() == INIT_PID_NS)
}

/// The executable mappings of live process `pid` (build ids not read).
pub(crate) fn read(pid: u32) -> Option<Vec<Mapping>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let maps = parse(&text);
    // None: a zombie, or a kernel thread: nothing to name addresses with.
    (!maps.is_empty()).then_some(maps)
}

/// A path to the file of mapping `m` of live process `pid`: through
/// `/proc/<pid>/map_files` (the file the process mapped, in whatever mount
/// namespace; needs CAP_SYS_ADMIN), else through `/proc/<pid>/root`.
pub(crate) fn live_file(pid: u32, m: &Mapping) -> Option<PathBuf> {
    let mapped = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
    if std::fs::metadata(&mapped).is_ok() {
        return Some(mapped);
    }
    let rooted = PathBuf::from(format!("/proc/{pid}/root{}", m.path));
    std::fs::metadata(&rooted).is_ok().then_some(rooted)
}

/// The GNU build id of the ELF file at `path`, hex.
pub(crate) fn build_id(path: &Path) -> Option<String> {
    let id = blazesym::helper::read_elf_build_id(path).ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_executable_file_mappings_are_kept() {
        let text = "\
55d0c0a00000-55d0c0a20000 r--p 00000000 fd:01 1234 /usr/bin/stress
55d0c0a20000-55d0c0b00000 r-xp 00020000 fd:01 1234 /usr/bin/stress
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7ffd1000000-7ffd1002000 r-xp 00000000 00:00 0 [vdso]
7f1000000000-7f1000100000 r-xp 00001000 fd:01 99 /lib/x86_64-linux-gnu/libc.so.6
";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].start, 0x55d0_c0a2_0000);
        assert_eq!(m[0].offset, 0x20000);
        assert_eq!(m[0].path, "/usr/bin/stress");
        assert_eq!(m[0].file, ((0xfd << 32) | 1, 1234));
        assert_eq!(m[1].path, "/lib/x86_64-linux-gnu/libc.so.6");
    }

    #[test]
    fn bad_lines_are_skipped_not_fatal() {
        assert!(parse("garbage\nzz-yy r-xp 0 0 0 /x\n").is_empty());
    }
}
