//! Decoder property tests: a short fuzz run inside `cargo test`.
use proptest::{collection::vec, prelude::*, sample::Index};

use super::*;
use crate::{
    CGROUP_PATH_LEN, COMM_LEN, MEMCG_EVENTS_MAX, MemcgStats, OOM_TASKS_MAX, OomTask, STATE_MAX,
    TaskInfo,
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

/// One past the last kind.
const NEXT_KIND: u32 = KINDS.len() as u32 + 1;

/// `k` is the value of a kind the decoder knows.
fn known(k: u32) -> bool {
    KINDS.iter().any(|&kind| kind as u32 == k)
}

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
        EventKind::Alloc => (header(kind), task(), any::<u64>(), any::<i32>())
            .prop_map(|(hdr, task, anon_bytes, stack_id)| {
                RawEvent::Alloc(AllocEvent {
                    hdr,
                    task,
                    anon_bytes,
                    stack_id,
                    _pad: 0,
                })
            })
            .boxed(),
        EventKind::Oom => oom_event(kind),
        EventKind::Signal => signal_event(kind),
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
        EventKind::OomTasks => oom_tasks_event(kind),
        EventKind::MemcgGrowth => growth_event(kind),
    }
}

fn oom_event(kind: EventKind) -> BoxedStrategy<RawEvent> {
    (
        (header(kind), task(), task()),
        any::<[u64; 8]>(),
        (any::<u32>(), any::<i32>(), any::<u32>(), any::<u32>()),
        (stats(), stats()),
        (any::<i32>(), any::<i32>()),
    )
        .prop_map(
            |(
                (hdr, victim, trigger),
                n,
                (uid, oom_score_adj, flags, source),
                (limit_stats, victim_stats),
                (user_stack_id, kernel_stack_id),
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
                    user_stack_id,
                    kernel_stack_id,
                }))
            },
        )
        .boxed()
}

fn signal_event(kind: EventKind) -> BoxedStrategy<RawEvent> {
    (
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
        .boxed()
}

fn oom_tasks_event(kind: EventKind) -> BoxedStrategy<RawEvent> {
    (
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
        .boxed()
}

fn growth_event(kind: EventKind) -> BoxedStrategy<RawEvent> {
    (
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
        .boxed()
}

/// Any kind, uniformly, then a record of it.
fn any_event() -> impl Strategy<Value = RawEvent> {
    proptest::sample::select(&KINDS[..]).prop_flat_map(event)
}

/// Kind values that are no known kind, biased towards the small neighbours.
fn unknown_kind() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        NEXT_KIND..=64,
        any::<u32>().prop_filter("a known kind", |k| !known(*k)),
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

    /// The same with a plausible kind (0 to one past the last) in front, so that most
    /// inputs reach the per-kind length checks.
    #[test]
    fn arbitrary_bytes_with_near_kinds(kind in 0u32..=NEXT_KIND, rest in vec(any::<u8>(), 0..600)) {
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
                prop_assert!(!known(k));
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

    /// A kind that is no known kind is `UnknownKind` whatever follows the
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
