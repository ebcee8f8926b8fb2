//! A kill's task list, written by the next program on `mark_victim`, may
//! reach the reader a drain after its kill (the reader is woken at the
//! kill's SIGKILL): the kill waits for it, a bounded time.
use std::time::{Duration, Instant};

use oom_tracer_common::{EventKind, ExecEvent, OomTask, OomTasksEvent};

use super::{held::now_header, *};

/// exec, the kernel's SIGKILL and the kill of pid 8 in `CTR`, at now.
fn exec_signal_kill(k: &mut FakeKernel) {
    k.push(&ExecEvent {
        hdr: now_header(EventKind::Exec),
        task: task(7, CTR),
    });
    k.push(&kernel_sigkill(now_header(EventKind::Signal), 8));
    let mut oom = translate::tests::oom_event(8, CTR, CTR);
    oom.hdr = now_header(EventKind::Oom);
    k.push(&oom);
}

fn task_list(victim: u32) -> OomTasksEvent {
    let mut t = OomTasksEvent {
        hdr: now_header(EventKind::OomTasks),
        victim_pid: victim,
        count: 1,
        memcg_id: CTR,
        ..Default::default()
    };
    t.tasks[0] = OomTask {
        pid: victim,
        tgid: victim,
        memcg_id: CTR,
        anon_pages: 100,
        ..Default::default()
    };
    t
}

#[test]
fn a_kill_read_a_drain_before_its_task_list_waits_for_it() {
    let (mut p, out) = pipeline(None);
    p.kernel.task_list = true;
    run_to_completion(async {
        p.start(Mode::Agent, Some(CgroupVersion::V1)).await.unwrap();
        exec_signal_kill(&mut p.kernel);
        p.pump().await.unwrap();
        assert!(
            p.held.is_some(),
            "the kill went without waiting for its tasks"
        );
        assert_eq!(out.events(), ["start", "exec", "container_start", "signal"]);
        p.kernel.push(&task_list(8));
        p.pump().await.unwrap();
        assert!(p.held.is_none());
        p.stop(StopReason::Signal("SIGTERM".into()), 0)
            .await
            .unwrap();
    });
    let kill = out.last("oom_kill");
    assert_eq!(kill["tasks"][0]["pid"], 8, "{kill}");
}

#[test]
fn a_task_list_that_does_not_come_holds_its_kill_a_bounded_time() {
    let (mut p, out) = pipeline(None);
    p.kernel.task_list = true;
    let started = Instant::now();
    run_to_completion(async {
        p.start(Mode::Agent, Some(CgroupVersion::V1)).await.unwrap();
        exec_signal_kill(&mut p.kernel);
        pump_while_held(&mut p, Duration::from_secs(5)).await;
        assert!(p.held.is_none(), "the kill is still held");
        p.stop(StopReason::Signal("SIGTERM".into()), 0)
            .await
            .unwrap();
    });
    // Bounded by the wait, not by the 5 s the test would pump.
    assert!(started.elapsed() < Duration::from_secs(2));
    let events = out.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(at("signal") < at("oom_kill"), "{events:?}");
    assert_eq!(out.last("oom_kill")["tasks"], serde_json::Value::Null);
}
