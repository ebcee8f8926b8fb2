//! The pipeline with a fake kernel and fake pods: every stage, in order,
//! and the three places where `run` and `agent` used to disagree.
use std::{cell::RefCell, collections::VecDeque, rc::Rc, sync::Arc, time::Duration};

use oom_tracer_common::{
    EventHeader, EventKind, ExecEvent, ExitEvent, SI_KERNEL, SignalEvent, TaskInfo,
};

use super::*;
use crate::{
    bpf::tracer::KernelCounters,
    cgroup::index::CgroupIndex,
    host::clock::BootClock,
    pods::{
        Container,
        fake::{FakePods, example_container},
    },
    schema::{HookStat, HookStatus},
    sinks::{
        Sink,
        metrics::{Metrics, MetricsSink, testing},
    },
};

mod held;
mod late_restart;
mod tasks;

/// Raw records and counters, as the ring buffer would hand them over.
#[derive(Default)]
struct FakeKernel {
    ring: VecDeque<Vec<u8>>,
    counters: KernelCounters,
    task_list: bool,
}

impl FakeKernel {
    fn push<T: Copy>(&mut self, ev: &T) {
        // SAFETY: the ABI structs are plain `#[repr(C)]` data.
        let bytes =
            unsafe { std::slice::from_raw_parts((ev as *const T).cast::<u8>(), size_of::<T>()) };
        self.ring.push_back(bytes.to_vec());
    }
}

impl Kernel for FakeKernel {
    fn drain(&mut self, each: &mut dyn FnMut(&[u8])) {
        while let Some(b) = self.ring.pop_front() {
            each(&b);
        }
    }

    async fn readable(&mut self) {
        std::future::pending::<()>().await;
    }

    fn counters(&self) -> KernelCounters {
        self.counters
    }

    fn watch(&mut self, _id: u64) -> Result<(), WatchError> {
        Ok(())
    }

    fn unwatch(&mut self, _id: u64) {}

    fn hooks(&self) -> HookStatus {
        HookStatus::default()
    }

    fn startup_ms(&self) -> u64 {
        1
    }

    fn hook_stats(&self) -> Vec<HookStat> {
        Vec::new()
    }

    fn stat_layouts(&self) -> Result<Vec<crate::bpf::memstat::StatLayout>, String> {
        Err("a fake kernel".into())
    }

    fn probe(&mut self, _tgid: u32, _on: bool) {}

    fn has_task_list(&self) -> bool {
        self.task_list
    }

    fn pressure(&self) -> Vec<(u64, oom_tracer_common::PressureStat)> {
        Vec::new()
    }

    fn pressure_of(&self, _memcg: u64) -> Option<oom_tracer_common::PressureStat> {
        None
    }

    fn forget_pressure(&mut self, _memcg: u64) {}
}

/// Every record the sinks got, as JSON.
#[derive(Clone, Default)]
struct Collect(Rc<RefCell<Vec<serde_json::Value>>>);

impl Sink for Collect {
    fn write(&mut self, r: &Record) -> Result<(), SinkError> {
        self.0.borrow_mut().push(serde_json::to_value(r).unwrap());
        Ok(())
    }
}

impl Collect {
    fn events(&self) -> Vec<String> {
        self.0
            .borrow()
            .iter()
            .map(|r| r["event"].as_str().unwrap().to_owned())
            .collect()
    }

    fn last(&self, event: &str) -> serde_json::Value {
        self.0
            .borrow()
            .iter()
            .rev()
            .find(|r| r["event"] == event)
            .cloned()
            .unwrap_or_else(|| panic!("no {event} in {:?}", self.events()))
    }
}

const CTR: u64 = 101;
const POD: u64 = 100;

fn container(restarts: u32) -> Container {
    example_container(restarts, POD)
}

type TestPipeline = Pipeline<FakeKernel, FakePods>;

fn pipeline(metrics: Option<Arc<Metrics>>) -> (TestPipeline, Collect) {
    let out = Collect::default();
    let mut sinks = Sinks::new().with(out.clone());
    if let Some(m) = metrics {
        sinks = sinks.with(MetricsSink::new(m));
    }
    let mut index = CgroupIndex::new(None);
    index.insert(POD, "/kubepods/podu");
    index.insert(CTR, "/kubepods/podu/c0");
    let mut pods = FakePods::default();
    pods.containers.insert(CTR, container(0));
    let p = Pipeline::new(
        FakeKernel::default(),
        Translator::new(BootClock::from_offset(0), index),
        pods,
        sinks,
        Analysis::new(
            crate::backoff::BackoffPolicy::default(),
            crate::analyse::pressure::PressureOptions {
                interval: Duration::from_secs(1),
                near_miss_after: Duration::from_secs(10),
                page_size: 4096,
            },
        ),
    );
    (p, out)
}

fn header(kind: EventKind, ms: u64) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        cpu: 0,
        boot_ns: ms * 1_000_000,
    }
}

fn task(pid: u32, memcg: u64) -> TaskInfo {
    translate::tests::task(pid, memcg)
}

fn run_to_completion<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

/// The OOM killer's SIGKILL of `pid` in `CTR`.
fn kernel_sigkill(hdr: EventHeader, pid: u32) -> SignalEvent {
    SignalEvent {
        hdr,
        target: task(pid, CTR),
        sender: task(pid, CTR),
        sig: 9,
        code: SI_KERNEL,
        ..Default::default()
    }
}

/// exec → kill → exit 137 of the main process, as a shell reports its
/// child's OOM kill.
fn oom_then_exit(k: &mut FakeKernel, exit_code: u32) {
    oom_then_exit_at(k, exit_code, 0);
}

/// `oom_then_exit`, its kernel times `base_ms` later.
fn oom_then_exit_at(k: &mut FakeKernel, exit_code: u32, base_ms: u64) {
    k.push(&ExecEvent {
        hdr: header(EventKind::Exec, base_ms + 1),
        task: task(7, CTR),
    });
    k.push(&kernel_sigkill(header(EventKind::Signal, base_ms + 5), 8));
    let mut oom = translate::tests::oom_event(8, CTR, CTR);
    oom.hdr = header(EventKind::Oom, base_ms + 5);
    k.push(&oom);
    k.push(&ExitEvent {
        hdr: header(EventKind::Exit, base_ms + 6),
        task: task(8, CTR),
        exit_code: 9,
        _pad: 0,
    });
    k.push(&ExitEvent {
        hdr: header(EventKind::Exit, base_ms + 7),
        task: task(7, CTR),
        exit_code,
        _pad: 0,
    });
}

/// exec → kill → exit of `oom_then_exit`, at the boot clock's now (a
/// kill read during the startup check is held from its kernel time).
fn oom_then_exit_now(k: &mut FakeKernel) {
    oom_then_exit_at(k, 9, BootClock::boot_now_ns() / 1_000_000);
}

/// Pumps as `trace_until` does while a record is held, for at most `max`.
async fn pump_while_held(p: &mut TestPipeline, max: Duration) {
    let until = std::time::Instant::now() + max;
    p.pump().await.unwrap();
    while p.held.is_some() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
        p.pump().await.unwrap();
    }
}

/// A check whose verdict comes after `after`, and a kill read while it
/// runs, pumped as `trace_until` does; `then` looks at the pipeline before
/// a last pump and the stop.
fn kill_during_check(after: Duration, then: impl FnOnce(&TestPipeline)) -> Collect {
    let (mut p, out) = pipeline(None);
    run_to_completion(async {
        p.fake_check(after, Ok(()));
        p.start(Mode::Agent, Some(CgroupVersion::V1)).await.unwrap();
        oom_then_exit_now(&mut p.kernel);
        pump_while_held(&mut p, Duration::from_secs(2)).await;
        then(&p);
        p.pump().await.unwrap();
        p.stop(StopReason::Signal("SIGTERM".into()), 0)
            .await
            .unwrap();
    });
    out
}

/// A kill read while the breakdown's startup check runs is held for its
/// verdict (a bounded time), so that it is translated with it; nothing is
/// reordered, and the drain is not blocked meanwhile.
#[test]
fn a_kill_during_the_check_waits_for_its_verdict() {
    let out = kill_during_check(Duration::from_millis(20), |_| {});
    let events = out.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(at("breakdown_check") < at("oom_kill"), "{events:?}");
    assert!(at("signal") < at("breakdown_check"), "{events:?}");
    assert!(at("oom_kill") < at("exit"), "{events:?}");
    assert_eq!(out.last("breakdown_check")["enabled"], true);
}

/// A check slower than the bound does not hold the kill longer: it goes
/// without the breakdown, and the verdict still comes.
#[test]
fn a_kill_waits_for_a_slow_check_only_a_bounded_time() {
    let out = kill_during_check(Duration::from_millis(600), |p| {
        assert!(p.held.is_none(), "the kill is held past its bound");
        std::thread::sleep(Duration::from_millis(700));
    });
    let events = out.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(at("oom_kill") < at("breakdown_check"), "{events:?}");
    assert_eq!(out.last("oom_kill")["breakdown"], serde_json::Value::Null);
    assert_eq!(out.last("breakdown_check")["enabled"], true);
}

#[test]
fn records_flow_through_every_stage_in_order() {
    let (mut p, out) = pipeline(None);
    run_to_completion(async {
        p.start(Mode::Agent, Some(CgroupVersion::V1)).await.unwrap();
        oom_then_exit(&mut p.kernel, 9);
        p.pump().await.unwrap();
        p.stop(StopReason::Signal("SIGTERM".into()), 0)
            .await
            .unwrap();
    });
    assert_eq!(
        out.events(),
        [
            "start",
            "exec",
            "container_start",
            "signal",
            "oom_kill",
            "exit",
            "exit",
            "container_exit",
            "cycle",
            "stop"
        ]
    );
    let oom = out.last("oom_kill");
    assert_eq!(oom["pod"]["name"], "oom-example", "enriched");
    assert_eq!(oom["memcg"]["level"], "container");
    let exit = &out.0.borrow()[5];
    assert_eq!(exit["pid"], 8);
    assert_eq!(exit["verdict"], "memcg_oom", "analysed");
    let stop = out.last("stop");
    assert_eq!(stop["oom_kills"], 1);
    assert_eq!(stop["records"], 10);
}

/// The agent's exit reason used to require SIGKILL of the main process.
#[test]
fn a_main_process_exiting_137_after_an_oom_kill_is_oomkilled() {
    let (mut p, out) = pipeline(None);
    run_to_completion(async {
        oom_then_exit(&mut p.kernel, 137 << 8);
        p.pump().await.unwrap();
    });
    let exit = out.last("container_exit");
    assert_eq!(exit["exit_code"], 137);
    assert!(exit["signal"].is_null());
    assert_eq!(exit["reason"], "OOMKilled");
    assert_eq!(
        exit["verdict"], "memcg_oom",
        "a parent reporting its child's kill"
    );
}

/// The agent's `lost` record used to say `read_errors: 0` whatever the
/// kernel counted.
#[test]
fn lost_records_carry_every_count() {
    let (mut p, out) = pipeline(None);
    run_to_completion(async {
        p.kernel.counters = KernelCounters {
            ringbuf_full: 3,
            read_errors: 2,
        };
        p.pump().await.unwrap();
        p.pump().await.unwrap();
        p.kernel.counters.read_errors = 5;
        p.pump().await.unwrap();
    });
    let lost: Vec<_> = out
        .0
        .borrow()
        .iter()
        .filter(|r| r["event"] == "lost")
        .cloned()
        .collect();
    assert_eq!(lost.len(), 2, "one per change: {lost:?}");
    assert_eq!(
        (
            lost[0]["ringbuf_full"].as_u64(),
            lost[0]["read_errors"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(
        (
            lost[1]["ringbuf_full"].as_u64(),
            lost[1]["read_errors"].as_u64()
        ),
        (Some(0), Some(3))
    );
}

/// Malformed ring-buffer records are dropped, counted, reported in `lost`
/// and `stop`, and reach `oom_tracer_decode_errors_total` (which used to
/// stay 0).
#[test]
fn decode_errors_reach_the_records_and_the_metric() {
    let metrics = Arc::new(Metrics::new());
    let (mut p, out) = pipeline(Some(metrics.clone()));
    run_to_completion(async {
        p.kernel.ring.push_back(vec![0xff; 7]);
        p.kernel.ring.push_back(vec![0x42; 64]);
        p.kernel.push(&ExecEvent {
            hdr: header(EventKind::Exec, 1),
            task: task(7, CTR),
        });
        p.pump().await.unwrap();
        p.stop(StopReason::Signal("SIGINT".into()), 0)
            .await
            .unwrap();
    });
    assert_eq!(out.last("lost")["decode_errors"], 2);
    assert_eq!(out.last("stop")["decode_errors"], 2);
    assert_eq!(
        out.last("exec")["comm"],
        "stress",
        "good records still flow"
    );
    let s = testing::parse(&metrics.encode());
    assert_eq!(
        testing::value(&s, "oom_tracer_decode_errors_total", &[]),
        Some(2.0)
    );
}

/// Sandboxes are dropped, other cgroups pass without pod, and a new
/// pod root is watched as soon as it is made.
#[test]
fn the_accessor_decides_what_is_reported() {
    let (mut p, out) = pipeline(None);
    p.pods.ignored.insert(55);
    p.pods.roots.push("/kubepods".into());
    run_to_completion(async {
        p.translator.index.insert(55, "/kubepods/podu/pause");
        p.translator.index.insert(56, "/system.slice/x");
        p.kernel.push(&ExecEvent {
            hdr: header(EventKind::Exec, 1),
            task: task(9, 55),
        });
        p.kernel.push(&ExecEvent {
            hdr: header(EventKind::Exec, 2),
            task: task(10, 56),
        });
        let mut mkdir = oom_tracer_common::CgroupEvent {
            hdr: header(EventKind::CgroupMkdir, 3),
            id: 77,
            ..Default::default()
        };
        mkdir.path[..9].copy_from_slice(b"/kubepods");
        p.kernel.push(&mkdir);
        p.pump().await.unwrap();
    });
    let execs: Vec<_> = out
        .0
        .borrow()
        .iter()
        .filter(|r| r["event"] == "exec")
        .cloned()
        .collect();
    assert_eq!(execs.len(), 1, "the sandbox's exec is dropped");
    assert_eq!(execs[0]["pid"], 10);
    assert!(execs[0]["pod"].is_null());
    assert!(p.has_pod_roots());
}
