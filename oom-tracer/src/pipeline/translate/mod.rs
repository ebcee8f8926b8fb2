//! Kernel records → output records: boot-time stamps become wall-clock
//! times, cgroup ids become paths, tasks become processes, raw exit codes
//! become signals and statuses. Who the cgroup belongs to is enrichment's
//! business (`enrich.rs`); why a process died is analysis's. The one
//! exception is the `oom_kill` record, assembled whole in `kill.rs` from
//! the kernel's record and what the pipeline hands in beside it.
use oom_tracer_common::{
    AllocEvent, CGROUP_PATH_LEN, CgroupEvent, ExecEvent, ExitEvent, GROWTH_SHMEM, MemcgGrowthEvent,
    SI_KERNEL, SignalEvent, TaskInfo,
    decode::{RawEvent, c_bytes},
};

pub(crate) mod kill;
pub(crate) mod memory;

use crate::{
    bpf::memstat::StatLayout,
    cgroup::index::{CgroupIndex, is_under},
    host::clock::BootClock,
    schema::{
        Alloc, AllocKind, Body, CgroupDir, Exec, Exit, Proc, Record, Signal, Timestamp,
        lossless_text,
    },
};

pub(crate) struct Translator {
    clock: BootClock,
    pub index: CgroupIndex,
    /// cgroup paths whose mkdir/rmdir are reported.
    watched_paths: Vec<String>,
    /// Where this kernel keeps each memcg statistic; `None` until the
    /// startup check trusted one (no breakdown meanwhile).
    layout: Option<StatLayout>,
    page_size: u64,
}

/// Decodes `task->exit_code`: (signal, exit status, core dumped).
pub(crate) fn decode_exit_code(code: u32) -> (Option<u32>, Option<u32>, bool) {
    let sig = code & 0x7f;
    let core = code & 0x80 != 0;
    if sig != 0 {
        (Some(sig), None, core)
    } else {
        (None, Some((code >> 8) & 0xff), false)
    }
}

pub(super) fn proc_of(t: &TaskInfo) -> Proc {
    Proc {
        pid: t.pid,
        tgid: t.tgid,
        comm: lossless_text(c_bytes(&t.comm)),
    }
}

/// The memory cgroup a kernel record is about (0 for none): the one its
/// pod and container are looked up by.
pub(crate) fn memcg_of(ev: &RawEvent) -> u64 {
    match ev {
        RawEvent::Exec(e) => e.task.memcg_id,
        RawEvent::Exit(e) => e.task.memcg_id,
        RawEvent::Alloc(e) => e.task.memcg_id,
        RawEvent::Signal(e) => e.target.memcg_id,
        RawEvent::Oom(e) => kill::victim_memcg(e),
        RawEvent::CgroupMkdir(e) | RawEvent::CgroupRmdir(e) | RawEvent::CgroupAttach(e) => e.id,
        RawEvent::MemcgGrowth(e) => e.memcg_id,
        RawEvent::MemcgProbe(e) => e.stats.memcg_id,
        RawEvent::OomTasks(e) => e.memcg_id,
    }
}

impl Translator {
    pub(crate) fn new(clock: BootClock, index: CgroupIndex) -> Self {
        Self {
            clock,
            index,
            watched_paths: Vec::new(),
            layout: None,
            page_size: 1 << crate::host::page_shift(),
        }
    }

    /// Trusts `layout` for the breakdown from now on (`None`: no breakdown).
    pub(crate) fn set_layout(&mut self, layout: Option<StatLayout>) {
        self.layout = layout;
    }

    pub(crate) fn page_size(&self) -> u64 {
        self.page_size
    }

    pub(crate) fn time(&self, boot_ns: u64) -> Timestamp {
        Timestamp(self.clock.to_system_time(boot_ns))
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.time(BootClock::boot_now_ns())
    }

    /// Reports the mkdir and rmdir of cgroups at or below `path`.
    pub(crate) fn watch_path(&mut self, path: &str) {
        // `run` watches each restarted container below its watched pod.
        if !self.is_watched_path(path) {
            self.watched_paths.push(path.to_owned());
        }
    }

    fn is_watched_path(&self, path: &str) -> bool {
        self.watched_paths.iter().any(|w| is_under(path, w))
    }

    /// The record for `ev`, or `None` for one that only feeds the index.
    pub(crate) fn translate(&mut self, ev: &RawEvent) -> Option<Record> {
        let time = self.time(ev.header().boot_ns);
        let body = match ev {
            RawEvent::Exec(e) => self.exec(e),
            RawEvent::Alloc(e) => self.alloc(e),
            RawEvent::Exit(e) => self.exit(e),
            RawEvent::Signal(e) => self.signal(e),
            RawEvent::Oom(e) => self.oom_kill(e, kill::KillInputs::default()),
            RawEvent::CgroupMkdir(e) => Body::CgroupMkdir(self.cgroup_dir(e)?),
            RawEvent::CgroupRmdir(e) => {
                let d = self.cgroup_dir(e);
                self.index.remove(e.id);
                Body::CgroupRmdir(d?)
            }
            RawEvent::CgroupAttach(e) => {
                // Only feeds the index: the exec that follows is the record.
                self.learn_path(e);
                return None;
            }
            RawEvent::MemcgGrowth(e) => self.growth(e),
            // Joined with their kill, or read by the startup check.
            RawEvent::OomTasks(_) | RawEvent::MemcgProbe(_) => return None,
        };
        Some(Record::new(time, body))
    }

    fn exec(&mut self, e: &ExecEvent) -> Body {
        Body::Exec(Exec {
            proc: proc_of(&e.task),
            cgroup: self.index.resolve(e.task.memcg_id),
            pod: None,
            container: None,
        })
    }

    fn alloc(&mut self, e: &AllocEvent) -> Body {
        Body::Alloc(Alloc {
            proc: proc_of(&e.task),
            kind: AllocKind::Anon,
            anon_rss_bytes: e.anon_bytes,
            memcg_bytes: None,
            limit_bytes: None,
            cgroup: self.index.resolve(e.task.memcg_id),
            pod: None,
            container: None,
        })
    }

    fn growth(&mut self, e: &MemcgGrowthEvent) -> Body {
        Body::Alloc(Alloc {
            proc: proc_of(&e.task),
            kind: if e.kind == GROWTH_SHMEM {
                AllocKind::Shmem
            } else {
                AllocKind::File
            },
            anon_rss_bytes: e.anon_rss_bytes,
            memcg_bytes: Some(e.bytes),
            limit_bytes: None,
            cgroup: self.index.resolve(e.memcg_id),
            pod: None,
            container: None,
        })
    }

    fn exit(&mut self, e: &ExitEvent) -> Body {
        let (signal, exit_code, core_dumped) = decode_exit_code(e.exit_code);
        Body::Exit(Exit {
            proc: proc_of(&e.task),
            signal,
            exit_code,
            core_dumped,
            verdict: None,
            killed_by: None,
            cgroup: self.index.resolve(e.task.memcg_id),
            pod: None,
            container: None,
        })
    }

    fn signal(&mut self, e: &SignalEvent) -> Body {
        Body::Signal(Signal {
            signal: e.sig,
            si_code: e.code,
            from_kernel: e.code == SI_KERNEL,
            target: proc_of(&e.target),
            sender: proc_of(&e.sender),
            cgroup: self.index.resolve(e.target.memcg_id),
            pod: None,
            container: None,
        })
    }

    /// A mkdir or rmdir record, if the cgroup is under a watched path.
    fn cgroup_dir(&mut self, e: &CgroupEvent) -> Option<CgroupDir> {
        let path = self.learn_path(e)?;
        self.is_watched_path(&path).then(|| CgroupDir {
            id: e.id,
            path,
            level: self.index.view_level(e.level),
        })
    }

    /// The view's path of a cgroup event (the kernel names it from the
    /// hierarchy's root, truncated to `CGROUP_PATH_LEN`), recorded in the
    /// index; else the index's, or a scan's. `None`: a cgroup outside
    /// this node's view.
    fn learn_path(&mut self, e: &CgroupEvent) -> Option<String> {
        let raw = c_bytes(&e.path);
        let cut = raw.len() + 1 >= CGROUP_PATH_LEN;
        if let Some(path) = self.index.learn_kernel_path(e.id, &lossless_text(raw), cut) {
            return Some(path);
        }
        self.index.resolve(e.id)
    }
}

#[cfg(test)]
pub(crate) mod tests;
