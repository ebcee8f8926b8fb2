//! The node-sized benchmark: `cargo xtask bench` runs it (it is ignored by
//! `cargo test`) and renders what it writes.
//!
//! A node's worth of pods on the test containerd, driven over the CRI by the
//! kubelet stand-in: from 8 CPUs on, 110 pods, 10 of them crash-looping on
//! OOM kills at once, plus a churn of short-lived pods (five starts and
//! stops a second); on fewer CPUs, fewer in proportion (see [`Load`]: a
//! 2-vCPU machine gets 27 pods, 3 crash loops and a churn pod every
//! 0.8 s), as containerd and runc need the CPU to start them. The API
//! stand-in serves 5,000 pods of realistic size, those of this node among
//! them. The agent runs with the CRI, the API and metrics on.
//!
//! The runtime's failures under load are its own: they are reported
//! (`runtime_failures`) and retried as the kubelet would, and an attempt
//! that never ran expects nothing from the agent. Whatever happens (a
//! pass, a failed check, a panic, SIGINT/SIGTERM), the pods and their
//! cgroups are removed (`node_bench/cleanup.rs`).
//!
//! It measures the agent's RSS and CPU over time, its records per second,
//! and writes them as JSON (`$OOM_TRACER_NODE_BENCH_OUT`, default
//! target/bench/node.json). It asserts only what must hold whatever the
//! speed: no record lost, every kill and restart attributed to the right
//! pod and container with the right restart count.
//!
//! Environment: `OOM_TRACER_NODE_BENCH_SECS` (default 120), the length of
//! the loaded phase; `OOM_TRACER_NODE_BENCH_PODS`, the pods on the node
//! (default: by the CPUs, as above; crash loops and churn follow);
//! `OOM_TRACER_NODE_BENCH_AGENT`, the agent binary (the bench passes its
//! release build; default: this test's own build).
//!
//! Its support is in `node_bench/`: `agent` (the agent's process and its
//! records), `sampling` (its RSS and CPU over time), `pods` (the pods the
//! kubelet stand-in runs, as the API server lists them) and `cleanup`.
#[path = "node_bench/agent.rs"]
mod agent;
#[path = "node_bench/cleanup.rs"]
mod cleanup;
mod common;
#[path = "node_bench/pods.rs"]
mod pods;
#[path = "node_bench/sampling.rs"]
mod sampling;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use agent::AgentProc;
use cleanup::{Guard, Made};
use common::{
    apiserver::{ApiServer, realistic_pod_json},
    kubelet::{Kubelet, Pod, require_runtime},
};
use pods::{Done, Failures, HOG, IDLE, api_pod, churn, crash_loop, run_pod, start_pods};
use sampling::{memory_map, sampler, stats};
use serde_json::json;

pub(crate) const NODE: &str = "bench-node";
const CLUSTER_PODS: usize = 5000;
/// A churn pod lives this long.
pub(crate) const CHURN_LIFE: Duration = Duration::from_millis(1500);

/// The load, by the machine's CPUs: a full node (110 pods, 10 crash
/// loops, a churn pod every 200 ms) from 8 CPUs on, in proportion below.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    pub(crate) pods: usize,
    pub(crate) crash: usize,
    pub(crate) churn_every: Duration,
}

impl Load {
    fn for_machine() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        let pods = std::env::var("OOM_TRACER_NODE_BENCH_PODS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(110 * cpus / 8)
            .max(10);
        Self {
            pods,
            crash: pods.div_ceil(11),
            churn_every: Duration::from_millis(200 * 110 / pods as u64),
        }
    }
}

fn out_path() -> PathBuf {
    std::env::var_os("OOM_TRACER_NODE_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/node.json")
        })
}

#[test]
#[ignore = "a benchmark of several minutes: cargo xtask bench runs it"]
fn node_bench() {
    require_runtime();
    let secs: u64 = std::env::var("OOM_TRACER_NODE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let ns = format!("node-bench-{}", std::process::id());
    let t_start = Instant::now();
    let load = Load::for_machine();
    eprintln!("node bench: {load:?}");
    // Declared first: dropped last, after the agent has stopped.
    let made = Made::new(&ns);
    let _guard = Guard(made.clone());
    made.on_signals();
    let failures = Failures::default();

    // The cluster: 5,000 pods, all but this node's on 50 other nodes.
    let api = Arc::new(ApiServer::start());
    api.upsert_many((0..CLUSTER_PODS - load.pods).map(|i| {
        realistic_pod_json(
            &format!("team-{}", i % 40),
            &format!("web-{i:05}"),
            &format!("00000000-0000-4000-8000-{i:012}"),
            &format!("node-{:03}", i % 50),
            "app",
            Some(&format!("{i:064x}")),
            0,
        )
    }));
    let kubeconfig = api.kubeconfig(&std::env::temp_dir());

    let agent = AgentProc::start(&kubeconfig);
    let pid = agent.pid();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampling = sampler(pid, stop_sampling.clone());
    let t0 = Instant::now();
    let at = || t0.elapsed().as_secs_f64();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut done = Done::default();
    let stop = Arc::new(AtomicBool::new(false));

    // Phase 1: one pod on the node.
    let first = rt.block_on(start_pods(
        &api,
        &made,
        &failures,
        &ns,
        vec!["app-000".into()],
        &IDLE,
    ));
    done.pods.extend(first.into_iter().map(|(p, _)| p));
    let one_from = at();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(3));
        agent.scrape();
    }
    let one_to = at();
    let one_pod_memory = memory_map(pid);

    // Phase 2: the node fills up, some pods crash-looping.
    let fill_from = at();
    let crash_names: Vec<String> = (0..load.crash).map(|i| format!("oom-{i:03}")).collect();
    let crash_pods: Vec<Pod> = rt.block_on(async {
        let mut v = Vec::new();
        let mut k = Kubelet::connect().await;
        for name in &crash_names {
            if let Some(pod) = run_pod(&mut k, &made, &failures, &ns, name, 4).await {
                api.upsert(api_pod(&pod, HOG.name, None, 0));
                v.push(pod);
            }
        }
        v
    });
    let idle_names: Vec<String> = (1..load.pods - load.crash)
        .map(|i| format!("app-{i:03}"))
        .collect();
    let idle = rt.block_on(start_pods(&api, &made, &failures, &ns, idle_names, &IDLE));
    done.pods.extend(idle.into_iter().map(|(p, _)| p));
    let fill_to = at();

    // Phase 3: the crash loops and the churn, for `secs`.
    let load_from = at();
    let (attempts, churned, load_memory) = rt.block_on(async {
        let loops: Vec<_> = crash_pods
            .iter()
            .map(|p| {
                tokio::spawn(crash_loop(
                    api.clone(),
                    Pod {
                        sandbox_id: p.sandbox_id.clone(),
                        config: p.config.clone(),
                        uid: p.uid.clone(),
                        name: p.name.clone(),
                        namespace: p.namespace.clone(),
                    },
                    stop.clone(),
                    failures.clone(),
                ))
            })
            .collect();
        let churn = tokio::spawn(churn(
            api.clone(),
            made.clone(),
            failures.clone(),
            ns.clone(),
            load,
            stop.clone(),
        ));
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(5)).await;
            agent.scrape();
        }
        stop.store(true, Ordering::Relaxed);
        let memory = memory_map(pid);
        let mut attempts = Vec::new();
        for l in loops {
            attempts.extend(l.await.expect("a crash loop"));
        }
        (attempts, churn.await.expect("the churn"), memory)
    });
    let load_to = at();
    done.crash_attempts = attempts;
    done.churn = churned;
    done.pods.extend(crash_pods);

    // Tear down the node, then stop the agent.
    rt.block_on(async {
        let mut k = Kubelet::connect().await;
        for p in &done.pods {
            k.remove_pod(p).await;
            api.delete(&p.uid);
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    stop_sampling.store(true, Ordering::Relaxed);
    let samples = sampling.join().unwrap();
    let seen = agent.stop();
    let stop_rec = seen.stop.clone().expect("a stop record");
    let lost = stop_rec["lost_events"].as_u64().unwrap_or(0) + seen.lost;

    // Attribution: every kill and restart of a crash loop.
    let (mut kills_right, mut kills_wrong, mut kills_missing) = (0, Vec::new(), 0);
    let (mut restarts_right, mut restarts_wrong, mut restarts_missing) = (0, Vec::new(), 0);
    let oom_attempts: Vec<_> = done.crash_attempts.iter().filter(|a| a.5 == 137).collect();
    for (uid, name, namespace, attempt, id, _, _) in &oom_attempts {
        match seen
            .kills
            .iter()
            .find(|k| k["container"]["id"] == id.as_str())
        {
            None => kills_missing += 1,
            Some(k) => {
                let right = k["pod"]["uid"] == uid.as_str()
                    && k["pod"]["name"] == name.as_str()
                    && k["pod"]["namespace"] == namespace.as_str()
                    && k["container"]["name"] == HOG.name
                    && k["container"]["restart_count"] == *attempt;
                if right {
                    kills_right += 1;
                } else {
                    kills_wrong.push(k.clone());
                }
            }
        }
        if *attempt == 0 {
            continue;
        }
        let restart = seen
            .restarts
            .iter()
            .find(|r| r["pod"]["uid"] == uid.as_str() && r["restart_count"] == *attempt);
        match restart {
            None => restarts_missing += 1,
            Some(r) if r["container"]["name"] == HOG.name && r["pod"]["name"] == name.as_str() => {
                restarts_right += 1;
            }
            Some(r) => restarts_wrong.push(r.clone()),
        }
    }
    // The churn: every start and exit names its own pod.
    let mut churn_wrong = Vec::new();
    let (mut churn_starts, mut churn_exits) = (0, 0);
    for (uid, name, id) in &done.churn {
        for (recs, n) in [
            (&seen.starts, &mut churn_starts),
            (&seen.exits, &mut churn_exits),
        ] {
            if let Some(r) = recs.iter().find(|r| r["container"]["id"] == id.as_str()) {
                *n += 1;
                if r["pod"]["uid"] != uid.as_str() || r["pod"]["name"] != name.as_str() {
                    churn_wrong.push(r.clone());
                }
            }
        }
    }
    let records: u64 = seen.counts.values().sum();
    let span = match (seen.first, seen.last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    let load_records = seen.counts.clone();
    let runtime_failures = failures.all();
    let report = json!({
        "config": {
            "node_pods": load.pods, "crash_looping": load.crash, "cluster_pods": CLUSTER_PODS,
            "api_pods_per_node_listed": load.pods,
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "churn_every_ms": load.churn_every.as_millis(), "churn_life_ms": CHURN_LIFE.as_millis(),
            "load_secs": secs, "agent": "agent --cri-socket --kube-api auto --node-name --kubeconfig --listen",
        },
        "phases_s": {
            "one_pod": [one_from, one_to], "fill": [fill_from, fill_to], "load": [load_from, load_to],
        },
        "agent": {
            "one_pod": stats(&samples, one_from + 2.0, one_to),
            "fill": stats(&samples, fill_from, fill_to),
            "load": stats(&samples, load_from, load_to),
            "all": stats(&samples, 0.0, f64::MAX),
            "memory_one_pod": one_pod_memory,
            "memory_end_of_load": load_memory,
        },
        "records": {
            "total": records, "per_s": records as f64 / span, "span_s": span,
            "by_event": load_records, "lost": lost,
        },
        "kills": {"expected": oom_attempts.len(), "right": kills_right,
                  "wrong": kills_wrong.len(), "missing": kills_missing,
                  "non_oom_exits": done.crash_attempts.len() - oom_attempts.len()},
        "restarts": {"expected": oom_attempts.iter().filter(|a| a.3 > 0).count(), "right": restarts_right,
                     "wrong": restarts_wrong.len(), "missing": restarts_missing},
        "churn": {"pods": done.churn.len(), "starts_seen": churn_starts, "exits_seen": churn_exits,
                  "wrong": churn_wrong.len(),
                  "starts_per_s": done.churn.len() as f64 / (load_to - load_from)},
        "runtime_failures": {"count": runtime_failures.len(), "first": runtime_failures.iter().take(20).collect::<Vec<_>>()},
        "elapsed_s": t_start.elapsed().as_secs_f64(),
        "samples": samples.iter().map(|s| json!([s.at_s, s.rss_kib, s.cpu_ms])).collect::<Vec<_>>(),
    });
    let path = out_path();
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!("node bench: wrote {}", path.display());

    assert_eq!(lost, 0, "records lost: {stop_rec}");
    assert!(
        kills_wrong.is_empty() && restarts_wrong.is_empty() && churn_wrong.is_empty(),
        "misattributed: kills {kills_wrong:#?}\nrestarts {restarts_wrong:#?}\nchurn {churn_wrong:#?}"
    );
    assert_eq!(
        (kills_missing, restarts_missing),
        (0, 0),
        "kills or restarts without a record"
    );
    assert!(!oom_attempts.is_empty(), "no OOM kill happened");
}
