//! A restart whose names come late (a loaded node, a slow runtime): after
//! the previous container's exit and the removal of its cgroup, and after
//! the new container's start. The `restart` is written when they come.
use std::time::Duration;

use oom_tracer_common::{CgroupEvent, EventKind, ExecEvent, ExitEvent};

use super::{held::now_header, *};
use crate::{pods::fake::unnamed_container, schema::Timestamp};

const NEXT: u64 = 102;

fn past_the_hold() {
    std::thread::sleep(Duration::from_nanos(handle::NAMES_WAIT_NS) + Duration::from_millis(5));
}

fn time_of(r: &serde_json::Value) -> Timestamp {
    r["time"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_restart_is_written_when_the_names_come() {
    let (mut p, out) = pipeline(None);
    p.translator.index.insert(NEXT, "/kubepods/podu/c1");
    p.pods.containers.insert(CTR, unnamed_container(0, POD));
    p.pods.containers.insert(NEXT, unnamed_container(1, POD));
    p.pods.unnamed.extend([CTR, NEXT]);
    run_to_completion(async {
        // The first container: started, OOM-killed, gone, all unnamed.
        p.kernel.push(&ExecEvent {
            hdr: now_header(EventKind::Exec),
            task: task(7, CTR),
        });
        let mut oom = translate::tests::oom_event(7, CTR, CTR);
        oom.hdr = now_header(EventKind::Oom);
        p.kernel.push(&oom);
        p.pump().await.unwrap();
        past_the_hold();
        p.kernel.push(&ExitEvent {
            hdr: now_header(EventKind::Exit),
            task: task(7, CTR),
            exit_code: 9,
            _pad: 0,
        });
        p.kernel.push(&CgroupEvent {
            hdr: now_header(EventKind::CgroupRmdir),
            id: CTR,
            ..Default::default()
        });
        p.pump().await.unwrap();
        // Its restart, unnamed as well.
        std::thread::sleep(Duration::from_millis(30));
        p.kernel.push(&ExecEvent {
            hdr: now_header(EventKind::Exec),
            task: task(9, NEXT),
        });
        p.pump().await.unwrap();
        past_the_hold();
        p.pump().await.unwrap();
        assert!(!out.events().contains(&"restart".to_owned()));
        // The names come, the later container's first.
        p.pods.answers.push((NEXT, container(1)));
        p.pods.answers.push((CTR, container(0)));
        p.pump().await.unwrap();
    });
    let events = out.events();
    assert_eq!(
        events.iter().filter(|e| *e == "container_start").count(),
        2,
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("restart"));
    let restart = out.last("restart");
    let start = out.last("container_start");
    let exit = out.last("container_exit");
    assert!(
        start["container"]["name"].is_null(),
        "written before the names"
    );
    assert_eq!(restart["time"], start["time"], "the start's time");
    assert_eq!(restart["container"]["name"], "stress");
    assert_eq!(restart["container"]["id"], "c1");
    assert_eq!(restart["pod"]["name"], "oom-example");
    assert_eq!(restart["restart_count"], 1);
    assert_eq!(restart["last_reason"], "OOMKilled");
    assert_eq!(exit["reason"], "OOMKilled");
    let backoff = time_of(&start).ms_since(time_of(&exit));
    assert_eq!(restart["backoff_ms"], backoff);
    assert!(backoff >= 30, "{backoff}");
}
