//! Records of a container whose names are late: held a bounded time, in
//! kernel order, then written with the ids alone; the names follow.
use std::time::Duration;

use oom_tracer_common::{EventHeader, EventKind, ExecEvent, ExitEvent};

use super::*;
use crate::{
    pods::fake::unnamed_container,
    schema::{ContainerRef, PodRef},
};

/// A boot-clock header of now (the hold is measured from the kernel time
/// of the container's first record).
pub(super) fn now_header(kind: EventKind) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        cpu: 0,
        boot_ns: BootClock::boot_now_ns(),
    }
}

/// The pipeline with container `CTR` known by its path only, and a sink
/// that notes which containers were named.
fn unnamed_pipeline() -> (TestPipeline, Collect, Rc<RefCell<Vec<String>>>) {
    let (mut p, out) = pipeline(None);
    p.pods.containers.insert(CTR, unnamed_container(0, POD));
    p.pods.unnamed.insert(CTR);
    let named = Rc::new(RefCell::new(Vec::new()));
    p.sinks = std::mem::take(&mut p.sinks).with(Named(named.clone()));
    (p, out, named)
}

struct Named(Rc<RefCell<Vec<String>>>);

impl Sink for Named {
    fn write(&mut self, _r: &Record) -> Result<(), SinkError> {
        Ok(())
    }

    fn named(&mut self, pod: &PodRef, c: &ContainerRef) -> Result<(), SinkError> {
        let name = format!("{:?}/{:?}", pod.name, c.name);
        self.0.borrow_mut().push(name);
        Ok(())
    }
}

fn exec_and_kill(k: &mut FakeKernel) {
    k.push(&ExecEvent {
        hdr: now_header(EventKind::Exec),
        task: task(7, CTR),
    });
    let mut oom = translate::tests::oom_event(7, CTR, CTR);
    oom.hdr = now_header(EventKind::Oom);
    k.push(&oom);
}

#[test]
fn names_that_come_in_time_are_on_the_first_records() {
    let (mut p, out, named) = unnamed_pipeline();
    run_to_completion(async {
        exec_and_kill(&mut p.kernel);
        p.pump().await.unwrap();
        assert!(out.events().is_empty(), "held: {:?}", out.events());
        p.pods.answers.push((CTR, container(0)));
        p.pump().await.unwrap();
    });
    assert_eq!(out.events(), ["exec", "container_start", "oom_kill"]);
    for r in out.0.borrow().iter() {
        assert_eq!(r["pod"]["name"], "oom-example", "{r}");
        assert_eq!(r["container"]["name"], "stress", "{r}");
    }
    assert_eq!(*named.borrow(), ["Some(\"oom-example\")/Some(\"stress\")"]);
}

#[test]
fn late_names_let_the_records_go_after_the_wait_and_follow() {
    let (mut p, out, named) = unnamed_pipeline();
    run_to_completion(async {
        exec_and_kill(&mut p.kernel);
        p.pump().await.unwrap();
        assert!(out.events().is_empty());
        std::thread::sleep(Duration::from_nanos(handle::NAMES_WAIT_NS) + Duration::from_millis(5));
        p.pump().await.unwrap();
        assert_eq!(out.events(), ["exec", "container_start", "oom_kill"]);
        // Not held again: the container's wait is over.
        p.kernel.push(&ExitEvent {
            hdr: now_header(EventKind::Exit),
            task: task(7, CTR),
            exit_code: 9,
            _pad: 0,
        });
        p.pods.answers.push((CTR, container(0)));
        p.pump().await.unwrap();
    });
    let kill = out.last("oom_kill");
    assert_eq!(kill["pod"]["uid"], "u", "the ids the path gives");
    assert_eq!(kill["container"]["id"], "c0");
    assert!(kill["pod"]["name"].is_null() && kill["container"]["name"].is_null());
    assert_eq!(
        kill["memcg"]["level"], "container",
        "the level needs no names"
    );
    assert!(out.last("container_start")["container"]["name"].is_null());
    assert_eq!(out.last("container_exit")["container"]["name"], "stress");
    assert_eq!(named.borrow().len(), 1, "the sinks hear of the names");
}

#[test]
fn the_hold_is_bounded_by_the_trace_loop_itself() {
    let (mut p, out, _) = unnamed_pipeline();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let waited = rt.block_on(async {
        let mut signals = Signals::install().unwrap();
        exec_and_kill(&mut p.kernel);
        p.pump().await.unwrap();
        let t = std::time::Instant::now();
        let until = async {
            while out.events().len() < 3 {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        p.trace_until(&mut signals, until).await.unwrap();
        t.elapsed()
    });
    assert!(waited < Duration::from_millis(90), "{waited:?}");
}

#[test]
fn records_behind_a_held_one_keep_kernel_order() {
    let (mut p, out, _) = unnamed_pipeline();
    p.translator.index.insert(56, "/system.slice/x");
    run_to_completion(async {
        exec_and_kill(&mut p.kernel);
        p.kernel.push(&ExecEvent {
            hdr: now_header(EventKind::Exec),
            task: task(10, 56),
        });
        p.pump().await.unwrap();
        assert!(out.events().is_empty(), "{:?}", out.events());
        std::thread::sleep(Duration::from_nanos(handle::NAMES_WAIT_NS) + Duration::from_millis(5));
        p.pump().await.unwrap();
    });
    let pids: Vec<_> = out
        .0
        .borrow()
        .iter()
        .map(|r| (r["event"].as_str().unwrap().to_owned(), r["pid"].clone()))
        .collect();
    assert_eq!(
        out.events(),
        ["exec", "container_start", "oom_kill", "exec"]
    );
    assert_eq!(pids[3].1, 10, "{pids:?}");
}

#[test]
fn stopping_writes_what_was_held() {
    let (mut p, out, _) = unnamed_pipeline();
    run_to_completion(async {
        exec_and_kill(&mut p.kernel);
        p.pump().await.unwrap();
        assert!(out.events().is_empty());
        // A second new container behind the first: not held again.
        p.translator.index.insert(57, "/kubepods/podv/c9");
        p.pods.containers.insert(57, unnamed_container(9, POD));
        p.pods.unnamed.insert(57);
        p.kernel.push(&ExecEvent {
            hdr: now_header(EventKind::Exec),
            task: task(11, 57),
        });
        p.stop(StopReason::Signal("SIGTERM".into()), 0)
            .await
            .unwrap();
    });
    let events = out.events();
    assert_eq!(
        events.iter().filter(|e| *e == "container_start").count(),
        2,
        "{events:?}"
    );
    assert!(events.contains(&"oom_kill".to_owned()), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("stop"));
}
