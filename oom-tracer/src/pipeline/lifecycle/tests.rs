use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::pods::fake::example_container;

fn at(ms: u64) -> Timestamp {
    Timestamp(UNIX_EPOCH + Duration::from_millis(1_795_802_400_000 + ms))
}

fn container(restarts: u32) -> Container {
    example_container(restarts, 1)
}

fn end(pid: u32, ms: u64, signal: Option<u32>, status: Option<u32>, oom: bool) -> Ending {
    Ending {
        pid,
        at: at(ms),
        signal,
        status,
        verdict: None,
        oom_killed: oom,
    }
}

#[test]
fn start_exit_restart() {
    let mut l = Lifecycle::default();
    let c0 = container(0);
    let out = l.started(10, &c0, 7, at(0), false);
    assert_eq!(out.len(), 1, "the first start is no restart");
    assert!(l.started(10, &c0, 8, at(1), false).is_empty(), "once");
    assert!(
        l.exited(10, &c0, &end(8, 5, Some(9), None, true)).is_none(),
        "not the main process"
    );
    let e = l
        .exited(10, &c0, &end(7, 500, Some(9), None, true))
        .unwrap();
    assert_eq!(
        (e.exit_code, e.reason, e.ran_ms),
        (137, ExitReason::OomKilled, 500)
    );
    assert!(
        l.exited(10, &c0, &end(7, 501, Some(9), None, true))
            .is_none()
    );
    let out = l.started(11, &container(1), 9, at(10_600), false);
    let Body::Restart(r) = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!((r.restart_count, r.backoff_ms), (1, 10_100));
    assert_eq!(r.last_reason, ExitReason::OomKilled);
}

#[test]
fn a_parent_exiting_137_after_its_childs_oom_kill_is_oomkilled() {
    // The agent used to require the main process to die of SIGKILL.
    let mut l = Lifecycle::default();
    let c = container(0);
    l.started(10, &c, 7, at(0), false);
    let e = l
        .exited(10, &c, &end(7, 100, None, Some(137), true))
        .unwrap();
    assert_eq!(
        (e.exit_code, e.signal, e.reason),
        (137, None, ExitReason::OomKilled)
    );
    l.started(12, &c, 8, at(200), false);
    let e = l
        .exited(12, &c, &end(8, 300, None, Some(0), false))
        .unwrap();
    assert_eq!(e.reason, ExitReason::Completed);
}

#[test]
fn run_reports_its_own_restarts() {
    let mut l = Lifecycle::default();
    let c0 = container(0);
    l.started(10, &c0, 7, at(0), false);
    l.exited(10, &c0, &end(7, 100, Some(9), None, true));
    l.restart_reported(&container(1));
    assert_eq!(l.started(11, &container(1), 8, at(300), false).len(), 1);
    let found = l.started(12, &container(2), 9, at(400), true);
    assert_eq!(found.len(), 1);
    let Body::ContainerStart(s) = &found[0] else {
        panic!()
    };
    assert!(s.discovered);
}

/// The container of [`container`] as the cgroup path tells it, no names.
fn unnamed(restarts: u32) -> Container {
    crate::pods::fake::unnamed_container(restarts, 1)
}

fn restarts(out: &[(Timestamp, Body)]) -> Vec<(Timestamp, u32, u64, ExitReason)> {
    out.iter()
        .filter_map(|(t, b)| match b {
            Body::Restart(r) => Some((*t, r.restart_count, r.backoff_ms, r.last_reason)),
            _ => None,
        })
        .collect()
}

/// A slow runtime: neither the exit nor the next start had names, the
/// first cgroup is gone, and both names come at once, the later start
/// first: the restart is written then, with the start's time.
#[test]
fn names_after_the_exit_and_the_restart_still_give_the_restart() {
    let mut l = Lifecycle::default();
    l.started(10, &unnamed(0), 7, at(0), false);
    let x = l.exited(10, &unnamed(0), &end(7, 500, Some(9), None, true));
    assert_eq!(x.unwrap().reason, ExitReason::OomKilled);
    l.removed(10);
    let out = l.started(11, &unnamed(1), 9, at(800), false);
    assert_eq!(out.len(), 1, "no restart without names: {out:?}");
    assert!(l.waits_for_names(10) && l.waits_for_names(11));
    let out = l.named(vec![(11, container(1)), (10, container(0))]);
    assert_eq!(
        restarts(&out),
        [(at(800), 1, 300, ExitReason::OomKilled)],
        "{out:?}"
    );
    assert!(!l.waits_for_names(10) && !l.waits_for_names(11));
    // The next restart, named in time, follows the one named late.
    l.exited(11, &container(1), &end(9, 900, None, Some(1), false));
    let out = l.started(12, &container(2), 5, at(1_000), false);
    let Body::Restart(r) = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!((r.restart_count, r.backoff_ms), (2, 100));
    assert_eq!(r.last_reason, ExitReason::Error);
}

/// The start is named in time but the exit before it was not: the
/// restart waits for the exit's names (not paired with an older exit).
#[test]
fn a_named_start_waits_for_the_unnamed_exit_before_it() {
    let mut l = Lifecycle::default();
    l.started(10, &container(0), 7, at(0), false);
    l.exited(10, &container(0), &end(7, 100, Some(9), None, true));
    l.started(11, &unnamed(1), 8, at(200), false);
    l.exited(11, &unnamed(1), &end(8, 400, None, Some(2), false));
    l.removed(11);
    let out = l.started(12, &container(2), 9, at(1_400), false);
    assert_eq!(out.len(), 1, "the exit at 100 is not its previous one");
    let out = l.named(vec![(11, container(1))]);
    assert_eq!(
        restarts(&out),
        [
            (at(200), 1, 100, ExitReason::OomKilled),
            (at(1_400), 2, 1_000, ExitReason::Error)
        ],
        "{out:?}"
    );
}

/// An unnamed start that turns out to be its container's first has no
/// restart; nothing waits after its names came.
#[test]
fn a_first_start_named_late_is_no_restart() {
    let mut l = Lifecycle::default();
    l.started(10, &unnamed(0), 7, at(0), false);
    assert!(l.named(vec![(10, container(0))]).is_empty());
    assert!(!l.waits_for_names(10));
    l.started(20, &unnamed(0), 7, at(0), true);
    assert!(
        !l.waits_for_names(20),
        "a container found running is no restart"
    );
}

/// What waits for names is bounded in number and in time.
#[test]
fn what_waits_for_names_is_bounded() {
    let mut l = Lifecycle::default();
    let n = late::MAX_WAITING as u64 + 10;
    for i in 0..n {
        l.started(100 + i, &unnamed(0), 7, at(i), false);
        l.exited(100 + i, &unnamed(0), &end(7, i + 1, Some(9), None, true));
    }
    assert!(!l.waits_for_names(100), "the oldest went");
    assert!(l.waits_for_names(100 + n - 1));
    // Ten minutes later, the old ones are gone.
    l.started(1, &unnamed(0), 7, at(601_000 + n), false);
    l.exited(1, &unnamed(0), &end(7, 601_000 + n, Some(9), None, true));
    assert!(!l.waits_for_names(100 + n - 1));
    assert!(l.waits_for_names(1));
}
