//! tracefs: finding (or mounting) it, and reading tracepoint `format` files
//! so the classic-tracepoint programs use this kernel's field layout.
use std::{
    collections::HashMap,
    ffi::CString,
    path::{Path, PathBuf},
};

use oom_tracer_common::{OFFSET_ABSENT, TracepointLayout};

#[derive(Debug, thiserror::Error)]
pub(crate) enum TracefsError {
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing or /sys/kernel/debug/tracing and mounting it failed ({source}); mount it with `mount -t tracefs nodev /sys/kernel/tracing`"
    )]
    NotMounted {
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs root, mounting it at /sys/kernel/tracing if no tracefs is mounted.
pub(crate) fn root() -> Result<PathBuf, TracefsError> {
    if let Some(p) = find() {
        return Ok(p);
    }
    mount(Path::new(CANDIDATES[0])).map_err(|source| TracefsError::NotMounted { source })?;
    tracing::info!("mounted tracefs at {}", CANDIDATES[0]);
    Ok(PathBuf::from(CANDIDATES[0]))
}

/// The tracefs root if one is mounted.
pub(crate) fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

fn mount(at: &Path) -> std::io::Result<()> {
    let target = CString::new(at.as_os_str().as_encoded_bytes())?;
    // SAFETY: NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

/// The fields of a tracepoint's `format` file, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Format {
    pub fields: HashMap<String, Field>,
}

impl Format {
    /// Parses the text of a `format` file. Lines that do not parse are skipped.
    pub(crate) fn parse(text: &str) -> Self {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            let mut signed = false;
            for part in rest.split(';').map(str::trim) {
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("signed:") {
                    signed = v == "1";
                } else if decl.is_none() && !part.is_empty() {
                    decl = Some(part);
                }
            }
            let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
                continue;
            };
            // The name is the last word of the declaration, less any `[N]`.
            let name = decl
                .rsplit(|c: char| c.is_whitespace() || c == '*')
                .next()
                .unwrap_or(decl);
            let name = name.split('[').next().unwrap_or(name);
            fields.insert(
                name.to_owned(),
                Field {
                    offset,
                    size,
                    signed,
                },
            );
        }
        Self { fields }
    }

    pub(crate) fn offset(&self, name: &str) -> u32 {
        self.fields.get(name).map_or(OFFSET_ABSENT, |f| f.offset)
    }
}

/// Reads `events/<category>/<name>/format` under `root`.
pub(crate) fn read_format(root: &Path, category: &str, name: &str) -> Result<Format, TracefsError> {
    let path = root.join("events").join(category).join(name).join("format");
    let text = std::fs::read_to_string(&path).map_err(|source| TracefsError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(Format::parse(&text))
}

/// Whether `events/<category>/<name>` exists.
pub(crate) fn has_event(root: &Path, category: &str, name: &str) -> bool {
    root.join("events").join(category).join(name).is_dir()
}

/// Fills the layout of the tracepoints the programs read by offset. A
/// tracepoint that is missing leaves its offsets absent; the hook that
/// needs it then reports why it is not attached.
pub(crate) fn layout(root: &Path) -> TracepointLayout {
    let mut l = TracepointLayout::ABSENT;
    if let Ok(f) = read_format(root, "oom", "mark_victim") {
        l.mv_pid = f.offset("pid");
        l.mv_comm = f.offset("comm");
        l.mv_total_vm = f.offset("total_vm");
        l.mv_anon_rss = f.offset("anon_rss");
        l.mv_file_rss = f.offset("file_rss");
        l.mv_shmem_rss = f.offset("shmem_rss");
        l.mv_uid = f.offset("uid");
        l.mv_oom_score_adj = f.offset("oom_score_adj");
    }
    if let Ok(f) = read_format(root, "kmem", "rss_stat") {
        l.rss_curr = f.offset("curr");
        l.rss_member = f.offset("member");
        l.rss_size = f.offset("size");
    }
    if let Ok(f) = read_format(root, "cgroup", "cgroup_mkdir") {
        l.cg_root = f.offset("root");
        l.cg_level = f.offset("level");
        l.cg_id = f.offset("id");
        l.cg_path = f.offset("path");
    }
    if let Ok(f) = read_format(root, "cgroup", "cgroup_attach_task") {
        l.at_root = f.offset("dst_root");
        l.at_level = f.offset("dst_level");
        l.at_id = f.offset("dst_id");
        l.at_pid = f.offset("pid");
        l.at_path = f.offset("dst_path");
        l.at_comm = f.offset("comm");
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Format {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        Format::parse(&std::fs::read_to_string(p).unwrap())
    }

    #[test]
    fn mark_victim_6_18_has_every_field() {
        let f = fixture("format-6.18-mark_victim.txt");
        assert_eq!(f.offset("pid"), 8);
        assert_eq!(f.offset("comm"), 12);
        assert_eq!(f.offset("anon_rss"), 24);
        assert_eq!(f.offset("uid"), 48);
        assert_eq!(
            f.fields["oom_score_adj"],
            Field {
                offset: 64,
                size: 2,
                signed: true
            }
        );
        assert_eq!(f.offset("common_pid"), 4);
    }

    #[test]
    fn mark_victim_old_kernel_has_only_pid() {
        let f = fixture("format-5.15-mark_victim.txt");
        assert_eq!(f.offset("pid"), 8);
        assert_eq!(f.offset("anon_rss"), OFFSET_ABSENT);
        assert_eq!(f.offset("oom_score_adj"), OFFSET_ABSENT);
    }

    #[test]
    fn cgroup_and_rss_stat_layouts() {
        let f = fixture("format-6.18-cgroup_attach_task.txt");
        assert_eq!(f.offset("dst_root"), 8);
        assert_eq!(f.offset("dst_id"), 16);
        assert_eq!(f.offset("pid"), 24);
        assert_eq!(f.offset("dst_path"), 28);
        assert_eq!(f.offset("comm"), 32);
        let f = fixture("format-6.18-rss_stat.txt");
        assert_eq!(f.offset("curr"), 12);
        assert_eq!(f.offset("member"), 16);
        assert_eq!(f.fields["size"].size, 8);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let f = Format::parse(
            "field:int;\nfield:\nfoo\n\tfield:char name[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:int x;\toffset:zz;\tsize:4;",
        );
        assert_eq!(f.offset("name"), 8);
        assert_eq!(f.fields.len(), 1);
    }
}
