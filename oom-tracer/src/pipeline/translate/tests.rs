use oom_tracer_common::{
    EventHeader, EventKind, OOM_MEMCG_FOUND, OOM_RSS, OOM_SOURCE_TP_BTF, OomEvent,
};

use super::*;

fn translator() -> Translator {
    let mut t = Translator::new(BootClock::from_offset(0), CgroupIndex::new(None));
    t.index.insert(100, "/oom-tracer/pod-a");
    t.index.insert(101, "/oom-tracer/pod-a/stress-0");
    t.watch_path("/oom-tracer/pod-a");
    t
}

pub(crate) fn task(pid: u32, memcg: u64) -> TaskInfo {
    let mut t = TaskInfo {
        pid,
        tgid: pid,
        memcg_id: memcg,
        ..Default::default()
    };
    t.comm[..6].copy_from_slice(b"stress");
    t
}

pub(crate) fn oom_event(pid: u32, memcg: u64, oom_memcg: u64) -> OomEvent {
    OomEvent {
        hdr: EventHeader {
            kind: EventKind::Oom as u32,
            cpu: 0,
            boot_ns: 1_000_000_000,
        },
        victim: task(pid, memcg),
        trigger: task(pid, memcg),
        oom_memcg_id: oom_memcg,
        usage_bytes: 52428800,
        limit_bytes: 52428800,
        failcnt: 12,
        flags: OOM_MEMCG_FOUND | OOM_RSS,
        anon_rss_bytes: 50 << 20,
        source: OOM_SOURCE_TP_BTF,
        ..Default::default()
    }
}

#[test]
fn exit_codes() {
    assert_eq!(decode_exit_code(9), (Some(9), None, false));
    assert_eq!(decode_exit_code(0x86), (Some(6), None, true));
    assert_eq!(decode_exit_code(1 << 8), (None, Some(1), false));
    assert_eq!(decode_exit_code(0), (None, Some(0), false));
}

#[test]
fn oom_kill_at_the_container_and_globally() {
    let mut t = translator();
    let mut e = oom_event(42, 101, 101);
    let r = t.translate(&RawEvent::Oom(Box::new(e))).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["event"], "oom_kill");
    assert_eq!(v["time"], "1970-01-01T00:00:01.000000Z");
    assert_eq!(v["kind"], "memcg");
    assert_eq!(v["source"], "tp_btf/mark_victim");
    assert_eq!(v["victim"]["comm"], "stress");
    assert_eq!(v["victim"]["anon_rss_bytes"], 52428800);
    assert!(v["victim"]["oom_score_adj"].is_null());
    assert_eq!(v["memcg"]["path"], "/oom-tracer/pod-a/stress-0");
    assert!(v["memcg"]["level"].is_null(), "enrichment's business");
    assert_eq!(v["memcg"]["failcnt"], 12);
    assert_eq!(v["victim_cgroup"], "/oom-tracer/pod-a/stress-0");
    assert!(v["container"].is_null());
    e.flags = 0;
    let v = serde_json::to_value(t.translate(&RawEvent::Oom(Box::new(e))).unwrap()).unwrap();
    assert_eq!(v["kind"], "global");
    assert!(v["memcg"].is_null());
    assert!(v["victim"]["anon_rss_bytes"].is_null());
    // No victim memcg (classic tracepoint): the trigger's.
    e.victim.memcg_id = 0;
    assert_eq!(memcg_of(&RawEvent::Oom(Box::new(e))), 101);
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
    let r = t.translate(&RawEvent::CgroupRmdir(c)).unwrap();
    assert_eq!(r.event(), "cgroup_rmdir");
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
