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
            need: 1392
        }
    );
    assert_eq!(
        err.to_string(),
        "record of 16 bytes is shorter than the 1392-byte OomEvent"
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

/// Property tests: a short fuzz run of the decoder inside `cargo test`.
mod props {
    use proptest::{collection::vec, prelude::*, sample::Index};

    use super::*;
    use crate::{
        CGROUP_PATH_LEN, COMM_LEN, MEMCG_EVENTS_MAX, MemcgStats, OOM_TASKS_MAX, OomTask, STATE_MAX,
    };

    /// Bounded so that the whole set runs in well under a second; no
    /// `proptest-regressions` files are written into the tree.
    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    const KINDS: [EventKind; 11] = [
        EventKind::Exec,
        EventKind::Exit,
        EventKind::Alloc,
        EventKind::Oom,
        EventKind::Signal,
        EventKind::CgroupMkdir,
        EventKind::CgroupRmdir,
        EventKind::CgroupAttach,
        EventKind::MemcgProbe,
        EventKind::OomTasks,
        EventKind::MemcgGrowth,
    ];

    /// The raw bytes of the struct inside a decoded record.
    fn raw_bytes(ev: &RawEvent) -> Vec<u8> {
        match ev {
            RawEvent::Exec(e) => as_bytes(e),
            RawEvent::Exit(e) => as_bytes(e),
            RawEvent::Alloc(e) => as_bytes(e),
            RawEvent::Oom(e) => as_bytes(&**e),
            RawEvent::Signal(e) => as_bytes(e),
            RawEvent::CgroupMkdir(e) | RawEvent::CgroupRmdir(e) | RawEvent::CgroupAttach(e) => {
                as_bytes(e)
            }
            RawEvent::MemcgProbe(e) => as_bytes(&**e),
            RawEvent::OomTasks(e) => as_bytes(&**e),
            RawEvent::MemcgGrowth(e) => as_bytes(e),
        }
    }

    /// The name `Truncated` must give for a record of this variant.
    fn struct_name(ev: &RawEvent) -> &'static str {
        match ev {
            RawEvent::Exec(_) => "ExecEvent",
            RawEvent::Exit(_) => "ExitEvent",
            RawEvent::Alloc(_) => "AllocEvent",
            RawEvent::Oom(_) => "OomEvent",
            RawEvent::Signal(_) => "SignalEvent",
            RawEvent::CgroupMkdir(_) | RawEvent::CgroupRmdir(_) | RawEvent::CgroupAttach(_) => {
                "CgroupEvent"
            }
            RawEvent::MemcgProbe(_) => "MemcgProbeEvent",
            RawEvent::OomTasks(_) => "OomTasksEvent",
            RawEvent::MemcgGrowth(_) => "MemcgGrowthEvent",
        }
    }

    fn header(kind: EventKind) -> impl Strategy<Value = EventHeader> {
        (any::<u32>(), any::<u64>()).prop_map(move |(cpu, boot_ns)| EventHeader {
            kind: kind as u32,
            cpu,
            boot_ns,
        })
    }

    fn task() -> impl Strategy<Value = TaskInfo> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<[u8; COMM_LEN]>(),
        )
            .prop_map(|(pid, tgid, memcg_id, comm)| TaskInfo {
                pid,
                tgid,
                memcg_id,
                comm,
            })
    }

    fn cgroup(kind: EventKind) -> impl Strategy<Value = CgroupEvent> {
        (
            header(kind),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<[u8; COMM_LEN]>(),
            vec(any::<u8>(), CGROUP_PATH_LEN),
        )
            .prop_map(|(hdr, id, pid, level, comm, path)| CgroupEvent {
                hdr,
                id,
                pid,
                level,
                comm,
                path: path.try_into().unwrap(),
            })
    }

    fn stats() -> impl Strategy<Value = MemcgStats> {
        (
            any::<u64>(),
            vec(any::<i64>(), STATE_MAX),
            any::<[u64; MEMCG_EVENTS_MAX]>(),
            (any::<u64>(), any::<u32>(), any::<u32>()),
        )
            .prop_map(
                |(memcg_id, state, events, (pending_updates, state_len, flags))| MemcgStats {
                    memcg_id,
                    state: state.try_into().unwrap(),
                    events,
                    pending_updates,
                    state_len,
                    flags,
                },
            )
    }

    fn oom_task() -> impl Strategy<Value = OomTask> {
        (
            (any::<u32>(), any::<u32>(), any::<u64>()),
            any::<[u64; 3]>(),
            any::<[u8; COMM_LEN]>(),
            (any::<i32>(), any::<u32>()),
        )
            .prop_map(
                |((pid, tgid, memcg_id), p, comm, (oom_score_adj, _pad))| OomTask {
                    pid,
                    tgid,
                    memcg_id,
                    anon_pages: p[0],
                    file_pages: p[1],
                    shmem_pages: p[2],
                    comm,
                    oom_score_adj,
                    _pad,
                },
            )
    }

    /// A record of `kind` with every field (padding included) arbitrary.
    fn event(kind: EventKind) -> BoxedStrategy<RawEvent> {
        match kind {
            EventKind::Exec => (header(kind), task())
                .prop_map(|(hdr, task)| RawEvent::Exec(ExecEvent { hdr, task }))
                .boxed(),
            EventKind::Exit => (header(kind), task(), any::<u32>(), any::<u32>())
                .prop_map(|(hdr, task, exit_code, _pad)| {
                    RawEvent::Exit(ExitEvent {
                        hdr,
                        task,
                        exit_code,
                        _pad,
                    })
                })
                .boxed(),
            EventKind::Alloc => (header(kind), task(), any::<u64>())
                .prop_map(|(hdr, task, anon_bytes)| {
                    RawEvent::Alloc(AllocEvent {
                        hdr,
                        task,
                        anon_bytes,
                    })
                })
                .boxed(),
            EventKind::Oom => (
                (header(kind), task(), task()),
                any::<[u64; 8]>(),
                (any::<u32>(), any::<i32>(), any::<u32>(), any::<u32>()),
                (stats(), stats()),
            )
                .prop_map(
                    |(
                        (hdr, victim, trigger),
                        n,
                        (uid, oom_score_adj, flags, source),
                        (limit_stats, victim_stats),
                    )| {
                        RawEvent::Oom(Box::new(OomEvent {
                            hdr,
                            victim,
                            trigger,
                            oom_memcg_id: n[0],
                            usage_bytes: n[1],
                            limit_bytes: n[2],
                            failcnt: n[3],
                            total_vm_bytes: n[4],
                            anon_rss_bytes: n[5],
                            file_rss_bytes: n[6],
                            shmem_rss_bytes: n[7],
                            uid,
                            oom_score_adj,
                            flags,
                            source,
                            limit_stats,
                            victim_stats,
                        }))
                    },
                )
                .boxed(),
            EventKind::Signal => (
                header(kind),
                task(),
                task(),
                (any::<u32>(), any::<i32>(), any::<i32>(), any::<u32>()),
            )
                .prop_map(|(hdr, target, sender, (sig, code, result, _pad))| {
                    RawEvent::Signal(SignalEvent {
                        hdr,
                        target,
                        sender,
                        sig,
                        code,
                        result,
                        _pad,
                    })
                })
                .boxed(),
            EventKind::CgroupMkdir => cgroup(kind).prop_map(RawEvent::CgroupMkdir).boxed(),
            EventKind::CgroupRmdir => cgroup(kind).prop_map(RawEvent::CgroupRmdir).boxed(),
            EventKind::CgroupAttach => cgroup(kind).prop_map(RawEvent::CgroupAttach).boxed(),
            EventKind::MemcgProbe => (header(kind), any::<u32>(), any::<u32>(), stats())
                .prop_map(|(hdr, tgid, _pad, stats)| {
                    RawEvent::MemcgProbe(Box::new(MemcgProbeEvent {
                        hdr,
                        tgid,
                        _pad,
                        stats,
                    }))
                })
                .boxed(),
            EventKind::OomTasks => (
                header(kind),
                (
                    any::<u32>(),
                    any::<u32>(),
                    any::<u64>(),
                    any::<u32>(),
                    any::<u32>(),
                ),
                vec(oom_task(), OOM_TASKS_MAX),
            )
                .prop_map(
                    |(hdr, (victim_pid, count, memcg_id, truncated, _pad), tasks)| {
                        RawEvent::OomTasks(Box::new(OomTasksEvent {
                            hdr,
                            victim_pid,
                            count,
                            memcg_id,
                            truncated,
                            _pad,
                            tasks: tasks.try_into().unwrap(),
                        }))
                    },
                )
                .boxed(),
            EventKind::MemcgGrowth => (
                header(kind),
                task(),
                (
                    any::<u64>(),
                    any::<u32>(),
                    any::<u32>(),
                    any::<u64>(),
                    any::<u64>(),
                ),
            )
                .prop_map(
                    |(hdr, task, (memcg_id, kind, _pad, bytes, anon_rss_bytes))| {
                        RawEvent::MemcgGrowth(MemcgGrowthEvent {
                            hdr,
                            task,
                            memcg_id,
                            kind,
                            _pad,
                            bytes,
                            anon_rss_bytes,
                        })
                    },
                )
                .boxed(),
        }
    }

    /// Any kind, uniformly, then a record of it.
    fn any_event() -> impl Strategy<Value = RawEvent> {
        proptest::sample::select(&KINDS[..]).prop_flat_map(event)
    }

    /// Kind values outside 1..=8, biased towards the small neighbours.
    fn unknown_kind() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(0u32),
            12u32..=64,
            any::<u32>().prop_filter("a known kind", |k| !(1..=11).contains(k)),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        /// Arbitrary bytes never panic, and whatever decodes is exactly
        /// the record at the start of the input.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
            if let Ok(ev) = decode(&bytes) {
                let raw = raw_bytes(&ev);
                prop_assert_eq!(&bytes[..raw.len()], &raw[..]);
            }
        }

        /// The same with a plausible kind (0..=9) in front, so that most
        /// inputs reach the per-kind length checks.
        #[test]
        fn arbitrary_bytes_with_near_kinds(kind in 0u32..=9, rest in vec(any::<u8>(), 0..600)) {
            let mut bytes = kind.to_ne_bytes().to_vec();
            bytes.extend_from_slice(&rest);
            match decode(&bytes) {
                Ok(ev) => {
                    prop_assert_eq!(ev.header().kind, kind);
                    let raw = raw_bytes(&ev);
                    prop_assert_eq!(&bytes[..raw.len()], &raw[..]);
                }
                Err(DecodeError::UnknownKind(k)) => {
                    prop_assert_eq!(k, kind);
                    prop_assert!(!(1..=8).contains(&k));
                }
                Err(DecodeError::Truncated { len, need, .. }) => {
                    prop_assert_eq!(len, bytes.len());
                    prop_assert!(len < need);
                }
            }
        }

        /// Every kind: a record of arbitrary field values round-trips.
        #[test]
        fn round_trip(ev in any_event()) {
            let bytes = raw_bytes(&ev);
            prop_assert_eq!(decode(&bytes), Ok(ev));
        }

        /// Any strictly shorter prefix of a valid record is `Truncated`,
        /// naming the header below 16 bytes and the record's struct above.
        #[test]
        fn truncation_is_an_error(ev in any_event(), cut in any::<Index>()) {
            let bytes = raw_bytes(&ev);
            let len = cut.index(bytes.len());
            let (what, need) = if len < size_of::<EventHeader>() {
                ("EventHeader", size_of::<EventHeader>())
            } else {
                (struct_name(&ev), bytes.len())
            };
            prop_assert_eq!(
                decode(&bytes[..len]),
                Err(DecodeError::Truncated { what, len, need })
            );
        }

        /// A kind outside 1..=8 is `UnknownKind` whatever follows the
        /// header (and `Truncated` if even the header is short).
        #[test]
        fn unknown_kind_is_an_error(kind in unknown_kind(), rest in vec(any::<u8>(), 0..600)) {
            let mut bytes = kind.to_ne_bytes().to_vec();
            bytes.extend_from_slice(&rest);
            let want = if bytes.len() < size_of::<EventHeader>() {
                DecodeError::Truncated {
                    what: "EventHeader",
                    len: bytes.len(),
                    need: size_of::<EventHeader>(),
                }
            } else {
                DecodeError::UnknownKind(kind)
            };
            prop_assert_eq!(decode(&bytes), Err(want));
        }

        /// Bytes after a valid record are ignored.
        #[test]
        fn trailing_bytes_are_ignored(ev in any_event(), extra in vec(any::<u8>(), 1..300)) {
            let mut bytes = raw_bytes(&ev);
            bytes.extend_from_slice(&extra);
            prop_assert_eq!(decode(&bytes), Ok(ev));
        }
    }
}
