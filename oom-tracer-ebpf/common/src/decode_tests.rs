//! Decoder tests: fixtures, and property tests (a short fuzz run).
use super::*;
use crate::{OOM_MEMCG_FOUND, TaskInfo};

fn task(pid: u32, comm: &[u8]) -> TaskInfo {
    let mut t = TaskInfo {
        pid,
        tgid: pid,
        memcg_id: 77,
        ..Default::default()
    };
    t.comm[..comm.len()].copy_from_slice(comm);
    t
}

#[test]
fn oom_round_trip() {
    let ev = OomEvent {
        hdr: EventHeader {
            kind: EventKind::Oom as u32,
            cpu: 1,
            boot_ns: 123,
        },
        victim: task(10, b"stress"),
        trigger: task(10, b"stress"),
        oom_memcg_id: 77,
        usage_bytes: 52428800,
        limit_bytes: 52428800,
        failcnt: 9,
        flags: OOM_MEMCG_FOUND,
        ..Default::default()
    };
    let got = decode(&as_bytes(&ev)).unwrap();
    assert_eq!(got, RawEvent::Oom(Box::new(ev)));
    assert_eq!(got.header().boot_ns, 123);
    let RawEvent::Oom(o) = got else { panic!() };
    assert_eq!(c_bytes(&o.victim.comm), b"stress");
}

#[test]
fn every_kind_decodes_to_its_variant() {
    let mut c = CgroupEvent::default();
    for (kind, len) in [
        (EventKind::Exec, size_of::<ExecEvent>()),
        (EventKind::Exit, size_of::<ExitEvent>()),
        (EventKind::Alloc, size_of::<AllocEvent>()),
        (EventKind::Signal, size_of::<SignalEvent>()),
        (EventKind::CgroupMkdir, size_of::<CgroupEvent>()),
        (EventKind::CgroupRmdir, size_of::<CgroupEvent>()),
        (EventKind::CgroupAttach, size_of::<CgroupEvent>()),
        (EventKind::MemcgProbe, size_of::<MemcgProbeEvent>()),
        (EventKind::OomTasks, size_of::<OomTasksEvent>()),
        (EventKind::MemcgGrowth, size_of::<MemcgGrowthEvent>()),
    ] {
        c.hdr.kind = kind as u32;
        let mut bytes = as_bytes(&c);
        bytes.resize(len.max(bytes.len()), 0);
        let ev = decode(&bytes[..len]).unwrap();
        assert_eq!(ev.header().kind, kind as u32);
        // One byte short is an error naming the struct, never a panic.
        let err = decode(&bytes[..len - 1]).unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { need, .. } if need == len));
    }
}

#[test]
fn truncated_and_garbage_are_errors() {
    assert!(matches!(
        decode(&[]),
        Err(DecodeError::Truncated { need: 16, .. })
    ));
    assert!(matches!(
        decode(&[1, 0, 0]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut junk = [0xffu8; 200];
    assert_eq!(decode(&junk), Err(DecodeError::UnknownKind(u32::MAX)));
    junk[..4].copy_from_slice(&0u32.to_ne_bytes());
    assert_eq!(decode(&junk), Err(DecodeError::UnknownKind(0)));
    // A valid kind with a header only.
    let hdr = EventHeader {
        kind: EventKind::Oom as u32,
        ..Default::default()
    };
    let err = decode(&as_bytes(&hdr)).unwrap_err();
    assert_eq!(
        err,
        DecodeError::Truncated {
            what: "OomEvent",
            len: 16,
            need: 1400
        }
    );
    assert_eq!(
        err.to_string(),
        "record of 16 bytes is shorter than the 1400-byte OomEvent"
    );
}

#[test]
fn pseudo_random_bytes_never_panic() {
    // A cheap deterministic fuzz over lengths and kinds.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for len in 0..400 {
        let mut buf = vec![0u8; len];
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        if len >= 4 {
            buf[..4].copy_from_slice(&((x % 10) as u32).to_ne_bytes());
        }
        let _ = decode(&buf);
    }
}

#[test]
fn c_bytes_stops_at_nul_or_end() {
    assert_eq!(c_bytes(b"ab\0cd"), b"ab");
    assert_eq!(c_bytes(b"abcd"), b"abcd");
    assert_eq!(c_bytes(b"\0"), b"");
}
