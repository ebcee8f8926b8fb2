//! Kernel records → output records: cgroup ids become paths, tasks become
//! pods and containers, raw exit codes become signals and statuses.
use std::collections::HashMap;

use oom_tracer_common::{
    CGROUP_PATH_LEN, CgroupEvent, OOM_MEMCG_FOUND, OOM_RSS, OOM_SCORE_ADJ, OOM_SOURCE_TP_BTF,
    OOM_UID, OomEvent, SI_KERNEL, TaskInfo,
    decode::{RawEvent, c_bytes},
};

use crate::{
    cgroup::{CgroupVersion, index::CgroupIndex, index::is_under, pod::read_limit_hits},
    clock::{BootClock, rfc3339},
    record::{
        Body, ContainerRef, LimitLevel, Memcg, PodRef, Proc, Record, Trigger, Victim, lossless_text,
    },
    verdict::{Verdict, Verdicts},
};

/// What the translator knows about a container cgroup.
#[derive(Clone, Debug)]
pub struct ContainerMeta {
    pub pod: PodRef,
    pub container: ContainerRef,
    pub pod_cgroup_id: u64,
    pub limit_bytes: Option<u64>,
    pub pod_limit_bytes: Option<u64>,
}

pub struct Translator {
    clock: BootClock,
    pub index: CgroupIndex,
    containers: HashMap<u64, ContainerMeta>,
    /// cgroup paths whose lifecycle events are reported (all when empty and
    /// `watch_all`).
    watched_paths: Vec<String>,
    watch_all: bool,
    /// OOM kills seen per container cgroup id.
    pub oom_kills_by_cgroup: HashMap<u64, u64>,
    pub oom_kills: u64,
    verdicts: Verdicts,
    /// Verdicts of recent exits by pid, for the container's exit record.
    exit_verdicts: HashMap<u32, Verdict>,
}

/// Decodes `task->exit_code`: (signal, exit status, core dumped).
pub fn decode_exit_code(code: u32) -> (Option<u32>, Option<u32>, bool) {
    let sig = code & 0x7f;
    let core = code & 0x80 != 0;
    if sig != 0 {
        (Some(sig), None, core)
    } else {
        (None, Some((code >> 8) & 0xff), false)
    }
}

fn proc_of(t: &TaskInfo) -> Proc {
    Proc {
        pid: t.pid,
        tgid: t.tgid,
        comm: lossless_text(c_bytes(&t.comm)),
    }
}

impl Translator {
    pub fn new(clock: BootClock, index: CgroupIndex, watch_all: bool) -> Self {
        Self {
            clock,
            index,
            containers: HashMap::new(),
            watched_paths: Vec::new(),
            watch_all,
            oom_kills_by_cgroup: HashMap::new(),
            oom_kills: 0,
            verdicts: Verdicts::default(),
            exit_verdicts: HashMap::new(),
        }
    }

    /// The verdict of `pid`'s exit, once (for `container_exit`).
    pub fn take_exit_verdict(&mut self, pid: u32) -> Option<Verdict> {
        let v = self.exit_verdicts.remove(&pid);
        if self.exit_verdicts.len() > 4096 {
            self.exit_verdicts.clear();
        }
        v
    }

    pub fn time(&self, boot_ns: u64) -> String {
        rfc3339(self.clock.to_system_time(boot_ns))
    }

    pub fn now(&self) -> String {
        self.time(BootClock::boot_now_ns())
    }

    pub fn watch_path(&mut self, path: &str) {
        self.watched_paths.push(path.to_owned());
    }

    pub fn add_container(&mut self, cgroup_id: u64, path: &str, meta: ContainerMeta) {
        self.index.insert(cgroup_id, path);
        self.containers.insert(cgroup_id, meta);
    }

    pub fn container_meta(&self, cgroup_id: u64) -> Option<&ContainerMeta> {
        self.containers.get(&cgroup_id)
    }

    /// The container cgroup is gone; it still resolves for late records.
    pub fn container_removed(&mut self, cgroup_id: u64) {
        self.index.remove(cgroup_id);
    }

    fn meta(&self, memcg_id: u64) -> (Option<PodRef>, Option<ContainerRef>) {
        match self.containers.get(&memcg_id) {
            Some(m) => (Some(m.pod.clone()), Some(m.container.clone())),
            None => (None, None),
        }
    }

    fn is_watched_path(&self, path: &str) -> bool {
        self.watch_all || self.watched_paths.iter().any(|w| is_under(path, w))
    }

    pub fn translate(&mut self, ev: &RawEvent) -> Option<Record> {
        let time = self.time(ev.header().boot_ns);
        let body = match ev {
            RawEvent::Exec(e) => {
                let (pod, container) = self.meta(e.task.memcg_id);
                Body::Exec {
                    proc: proc_of(&e.task),
                    cgroup: self.index.resolve(e.task.memcg_id),
                    pod,
                    container,
                }
            }
            RawEvent::Alloc(e) => {
                let (pod, container) = self.meta(e.task.memcg_id);
                let limit = self
                    .containers
                    .get(&e.task.memcg_id)
                    .and_then(|m| m.limit_bytes.or(m.pod_limit_bytes));
                Body::Alloc {
                    proc: proc_of(&e.task),
                    anon_rss_bytes: e.anon_bytes,
                    limit_bytes: limit,
                    cgroup: self.index.resolve(e.task.memcg_id),
                    pod,
                    container,
                }
            }
            RawEvent::Exit(e) => {
                let (signal, exit_code, core_dumped) = decode_exit_code(e.exit_code);
                let (pod, container) = self.meta(e.task.memcg_id);
                let (verdict, killed_by) =
                    self.verdicts
                        .on_exit(e.task.tgid, e.task.memcg_id, signal, exit_code);
                if let Some(v) = verdict {
                    self.exit_verdicts.insert(e.task.tgid, v);
                }
                Body::Exit {
                    proc: proc_of(&e.task),
                    signal,
                    exit_code,
                    core_dumped,
                    verdict,
                    killed_by,
                    cgroup: self.index.resolve(e.task.memcg_id),
                    pod,
                    container,
                }
            }
            RawEvent::Signal(e) => {
                let (pod, container) = self.meta(e.target.memcg_id);
                if e.sig == 9 {
                    self.verdicts.sigkill(
                        e.target.tgid,
                        e.code == SI_KERNEL,
                        e.sender.tgid,
                        &proc_of(&e.sender).comm,
                    );
                }
                Body::Signal {
                    signal: e.sig,
                    si_code: e.code,
                    from_kernel: e.code == SI_KERNEL,
                    target: proc_of(&e.target),
                    sender: proc_of(&e.sender),
                    cgroup: self.index.resolve(e.target.memcg_id),
                    pod,
                    container,
                }
            }
            RawEvent::Oom(e) => self.oom(e),
            RawEvent::CgroupMkdir(e) => {
                let path = self.learn_path(e);
                if !self.is_watched_path(&path) {
                    return None;
                }
                Body::CgroupMkdir {
                    id: e.id,
                    path,
                    level: e.level,
                }
            }
            RawEvent::CgroupRmdir(e) => {
                let path = self.learn_path(e);
                self.index.remove(e.id);
                self.verdicts.cgroup_removed(e.id);
                if !self.is_watched_path(&path) {
                    return None;
                }
                Body::CgroupRmdir {
                    id: e.id,
                    path,
                    level: e.level,
                }
            }
            RawEvent::CgroupAttach(e) => {
                // Only feeds the index: the exec that follows is the record.
                self.learn_path(e);
                return None;
            }
        };
        Some(Record::new(time, body))
    }

    fn oom(&mut self, e: &OomEvent) -> Body {
        self.oom_kills += 1;
        let victim_memcg = if e.victim.memcg_id != 0 {
            e.victim.memcg_id
        } else {
            e.trigger.memcg_id
        };
        *self.oom_kills_by_cgroup.entry(victim_memcg).or_default() += 1;
        let (pod, container) = self.meta(victim_memcg);
        let has = |f: u32| e.flags & f != 0;
        let rss = |v: u64| has(OOM_RSS).then_some(v);
        let victim = Victim {
            pid: e.victim.pid,
            tgid: e.victim.tgid,
            comm: proc_of(&e.victim).comm,
            anon_rss_bytes: rss(e.anon_rss_bytes),
            file_rss_bytes: rss(e.file_rss_bytes),
            shmem_rss_bytes: rss(e.shmem_rss_bytes),
            total_vm_bytes: rss(e.total_vm_bytes),
            oom_score_adj: has(OOM_SCORE_ADJ).then_some(e.oom_score_adj),
            uid: has(OOM_UID).then_some(e.uid),
        };
        let trigger = Trigger {
            pid: e.trigger.pid,
            tgid: e.trigger.tgid,
            comm: proc_of(&e.trigger).comm,
            cgroup: self.index.resolve(e.trigger.memcg_id),
        };
        let memcg = has(OOM_MEMCG_FOUND).then(|| {
            let path = self.index.resolve(e.oom_memcg_id);
            let level = self.containers.get(&victim_memcg).map(|m| {
                if e.oom_memcg_id == victim_memcg {
                    LimitLevel::Container
                } else if e.oom_memcg_id == m.pod_cgroup_id {
                    LimitLevel::Pod
                } else {
                    LimitLevel::Ancestor
                }
            });
            let failcnt = match self.index.hierarchy().map(|h| h.version) {
                // v2 keeps no failcnt: memory.events `max` counts the same thing.
                Some(CgroupVersion::V2) => match (self.index.hierarchy().cloned(), &path) {
                    (Some(h), Some(p)) => read_limit_hits(&h, &h.dir(p)),
                    _ => None,
                },
                _ => Some(e.failcnt),
            };
            Memcg {
                id: e.oom_memcg_id,
                path,
                level,
                usage_bytes: e.usage_bytes,
                limit_bytes: e.limit_bytes,
                failcnt,
            }
        });
        let kind = if memcg.is_some() { "memcg" } else { "global" };
        self.verdicts
            .oom_victim(e.victim.tgid, victim_memcg, memcg.is_some());
        Body::OomKill {
            kind: kind.into(),
            victim,
            trigger,
            memcg,
            victim_cgroup: self.index.resolve(victim_memcg),
            source: if e.source == OOM_SOURCE_TP_BTF {
                "tp_btf/mark_victim".into()
            } else {
                "tracepoint/oom/mark_victim".into()
            },
            pod,
            container,
        }
    }
}

impl Translator {
    /// The path of a cgroup event, recorded in the index unless the kernel
    /// had to truncate it (then the index, or a scan, knows better).
    fn learn_path(&mut self, e: &CgroupEvent) -> String {
        let raw = c_bytes(&e.path);
        let path = lossless_text(raw);
        if raw.len() + 1 < CGROUP_PATH_LEN {
            self.index.insert(e.id, path.clone());
            return path;
        }
        self.index
            .resolve(e.id)
            .unwrap_or_else(|| format!("{path}…"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oom_tracer_common::{EventHeader, EventKind};

    fn translator() -> Translator {
        let mut t = Translator::new(BootClock::from_offset(0), CgroupIndex::new(None), false);
        t.index.insert(100, "/oom-tracer/pod-a");
        t.add_container(
            101,
            "/oom-tracer/pod-a/stress-0",
            ContainerMeta {
                pod: PodRef {
                    namespace: Some("default".into()),
                    name: Some("stress".into()),
                    uid: "u".into(),
                },
                container: ContainerRef {
                    name: Some("stress".into()),
                    id: "stress-0".into(),
                    restart_count: Some(0),
                },
                pod_cgroup_id: 100,
                limit_bytes: Some(50 << 20),
                pod_limit_bytes: None,
            },
        );
        t.watch_path("/oom-tracer/pod-a");
        t
    }

    fn task(pid: u32, memcg: u64) -> TaskInfo {
        let mut t = TaskInfo {
            pid,
            tgid: pid,
            memcg_id: memcg,
            ..Default::default()
        };
        t.comm[..6].copy_from_slice(b"stress");
        t
    }

    #[test]
    fn exit_codes() {
        assert_eq!(decode_exit_code(9), (Some(9), None, false));
        assert_eq!(decode_exit_code(0x86), (Some(6), None, true));
        assert_eq!(decode_exit_code(1 << 8), (None, Some(1), false));
        assert_eq!(decode_exit_code(0), (None, Some(0), false));
    }

    #[test]
    fn oom_at_container_and_pod_level() {
        let mut t = translator();
        let mut e = OomEvent {
            hdr: EventHeader {
                kind: EventKind::Oom as u32,
                cpu: 0,
                boot_ns: 1_000_000_000,
            },
            victim: task(42, 101),
            trigger: task(42, 101),
            oom_memcg_id: 101,
            usage_bytes: 52428800,
            limit_bytes: 52428800,
            failcnt: 12,
            flags: OOM_MEMCG_FOUND | OOM_RSS,
            anon_rss_bytes: 50 << 20,
            source: OOM_SOURCE_TP_BTF,
            ..Default::default()
        };
        let r = t.translate(&RawEvent::Oom(e)).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["event"], "oom_kill");
        assert_eq!(v["time"], "1970-01-01T00:00:01.000000Z");
        assert_eq!(v["kind"], "memcg");
        assert_eq!(v["victim"]["comm"], "stress");
        assert_eq!(v["victim"]["anon_rss_bytes"], 52428800);
        assert!(v["victim"]["oom_score_adj"].is_null());
        assert_eq!(v["memcg"]["path"], "/oom-tracer/pod-a/stress-0");
        assert_eq!(v["memcg"]["level"], "container");
        assert_eq!(v["memcg"]["failcnt"], 12);
        assert_eq!(v["victim_cgroup"], "/oom-tracer/pod-a/stress-0");
        assert_eq!(v["container"]["name"], "stress");
        e.oom_memcg_id = 100;
        let v = serde_json::to_value(t.translate(&RawEvent::Oom(e)).unwrap()).unwrap();
        assert_eq!(v["memcg"]["path"], "/oom-tracer/pod-a");
        assert_eq!(v["memcg"]["level"], "pod");
        e.flags = 0;
        let v = serde_json::to_value(t.translate(&RawEvent::Oom(e)).unwrap()).unwrap();
        assert_eq!(v["kind"], "global");
        assert!(v["memcg"].is_null());
        assert_eq!(t.oom_kills, 3);
        assert_eq!(t.oom_kills_by_cgroup[&101], 3);
    }

    #[test]
    fn cgroup_events_outside_the_watch_are_index_only() {
        let mut t = translator();
        let mut c = CgroupEvent {
            id: 555,
            ..Default::default()
        };
        c.hdr.kind = EventKind::CgroupMkdir as u32;
        c.path[..10].copy_from_slice(b"/elsewhere");
        assert!(t.translate(&RawEvent::CgroupMkdir(c)).is_none());
        assert_eq!(t.index.resolve(555).as_deref(), Some("/elsewhere"));
        let p = b"/oom-tracer/pod-a/x";
        c.path = [0; CGROUP_PATH_LEN];
        c.path[..p.len()].copy_from_slice(p);
        c.id = 556;
        let r = t.translate(&RawEvent::CgroupMkdir(c)).unwrap();
        assert_eq!(r.event(), "cgroup_mkdir");
        // A path the kernel truncated never replaces a known one.
        c.path = [b'x'; CGROUP_PATH_LEN];
        c.path[CGROUP_PATH_LEN - 1] = 0;
        c.id = 101;
        c.hdr.kind = EventKind::CgroupAttach as u32;
        assert!(t.translate(&RawEvent::CgroupAttach(c)).is_none());
        assert_eq!(
            t.index.resolve(101).as_deref(),
            Some("/oom-tracer/pod-a/stress-0")
        );
    }
}
