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
