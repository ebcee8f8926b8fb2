//! The node-sized benchmark: `cargo xtask bench` runs it (it is ignored by
//! `cargo test`) and renders what it writes.
//!
//! A node's worth of pods on the test containerd, driven over the CRI by the
//! kubelet stand-in: 110 pods, 10 of them crash-looping on OOM kills at once,
//! plus a churn of short-lived pods (several starts and stops a second). The
//! API stand-in serves 5,000 pods of realistic size, 110 of them on this
//! node. The agent runs with the CRI, the API and metrics on.
//!
//! It measures the agent's RSS and CPU over time, its records per second,
//! and writes them as JSON (`$OOM_TRACER_NODE_BENCH_OUT`, default
//! target/bench/node.json). It asserts only what must hold whatever the
//! speed: no record lost, every kill and restart attributed to the right
//! pod and container with the right restart count.
//!
//! Environment: `OOM_TRACER_NODE_BENCH_SECS` (default 120), the length of
//! the loaded phase; `OOM_TRACER_NODE_BENCH_AGENT`, the agent binary (the
//! bench passes its release build; default: this test's own build).
mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    TRACER,
    apiserver::{ApiServer, realistic_pod_json},
    kubelet::{ContainerSpec, Kubelet, Pod, SOCKET, require_runtime},
};
use serde_json::{Value, json};

const NODE: &str = "bench-node";
const NODE_PODS: usize = 110;
const CRASH_PODS: usize = 10;
const CLUSTER_PODS: usize = 5000;
/// A churn pod starts every this often and lives `CHURN_LIFE`.
const CHURN_EVERY: Duration = Duration::from_millis(200);
const CHURN_LIFE: Duration = Duration::from_millis(1500);
/// Pods started at once while the node fills up.
const START_PARALLEL: usize = 6;

/// Hits its 50Mi limit in about 200 ms.
const HOG: ContainerSpec<'static> = ContainerSpec {
    name: "hog",
    args: &["--step", "5Mi", "--interval", "20ms"],
    memory_limit: Some(50 << 20),
};
/// Holds 4Mi until removed.
const IDLE: ContainerSpec<'static> = ContainerSpec {
    name: "app",
    args: &[
        "--step",
        "1Mi",
        "--interval",
        "10ms",
        "--max",
        "4Mi",
        "--hold",
        "3600s",
    ],
    memory_limit: Some(64 << 20),
};

/// One second of the agent's life.
#[derive(Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_kib: f64,
    cpu_ms: f64,
}

/// The agent's records, as far as the checks need them.
#[derive(Default)]
struct Seen {
    counts: BTreeMap<String, u64>,
    first: Option<Instant>,
    last: Option<Instant>,
    kills: Vec<Value>,
    restarts: Vec<Value>,
    starts: Vec<Value>,
    exits: Vec<Value>,
    lost: u64,
    stop: Option<Value>,
}

struct AgentProc {
    child: Child,
    seen: Arc<Mutex<Seen>>,
    stdout: Option<std::thread::JoinHandle<()>>,
    metrics: Option<String>,
}

impl AgentProc {
    fn start(kubeconfig: &std::path::Path) -> Self {
        let bin = std::env::var_os("OOM_TRACER_NODE_BENCH_AGENT")
            .map_or_else(|| PathBuf::from(TRACER), PathBuf::from);
        let mut child = Command::new(&bin)
            .args(["agent", "--cri-socket", SOCKET, "--kube-api", "auto"])
            .args(["--node-name", NODE, "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--listen", "127.0.0.1:0"])
            .env("OOM_TRACER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the agent");
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let sink = seen.clone();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                let ev = v["event"].as_str().unwrap_or("").to_owned();
                let mut s = sink.lock().unwrap();
                let now = Instant::now();
                s.first.get_or_insert(now);
                s.last = Some(now);
                *s.counts.entry(ev.clone()).or_default() += 1;
                match ev.as_str() {
                    "oom_kill" => s.kills.push(v),
                    "restart" => s.restarts.push(v),
                    "container_start" => s.starts.push(v),
                    "container_exit" => s.exits.push(v),
                    "lost" => s.lost += v["ringbuf_full"].as_u64().unwrap_or(1),
                    "stop" => s.stop = Some(v),
                    _ => {}
                }
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(std::env::temp_dir().join("node-bench-agent.log"))
                .expect("agent log");
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(i) = l.find("http://")
                    && let Some(end) = l[i..].find("/metrics")
                {
                    let _ = tx.send(Some(l[i + 7..i + end].to_owned()));
                }
                if l.contains("agent ready") {
                    let _ = tx.send(None);
                }
                let _ = writeln!(log, "{l}");
            }
        });
        let mut metrics = None;
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Some(addr)) => metrics = Some(addr),
                Ok(None) => break,
                Err(_) => {
                    let _ = child.kill();
                    panic!("the agent was not ready within 60 s (see node-bench-agent.log)");
                }
            }
        }
        Self {
            child,
            seen,
            stdout: Some(stdout),
            metrics,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET /metrics, as Prometheus would: the metrics path stays in use.
    fn scrape(&self) -> usize {
        let Some(addr) = &self.metrics else { return 0 };
        let Ok(mut c) = std::net::TcpStream::connect(addr) else {
            return 0;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            c,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let mut body = String::new();
        let _ = c.read_to_string(&mut body);
        body.len()
    }

    /// SIGTERM, then the records.
    fn stop(mut self) -> Seen {
        // SAFETY: plain syscall on our child.
        unsafe { kill(self.child.id() as i32, 15) };
        let st = self.child.wait().unwrap();
        if let Some(h) = self.stdout.take() {
            h.join().unwrap();
        }
        assert!(st.success(), "agent exit {st:?} (see node-bench-agent.log)");
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn rss_kib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Where the agent's resident memory is: anonymous and file-backed, and the
/// mappings over 256 KiB.
fn memory_map(pid: u32) -> Value {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut big = BTreeMap::<String, u64>::new();
    let mut name = String::new();
    for l in smaps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first().is_some_and(|a| {
            a.contains('-') && a.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        }) {
            name = f.get(5).map_or("[anon]".into(), |s| (*s).to_owned());
        } else if f.first() == Some(&"Rss:") {
            *big.entry(name.clone()).or_default() +=
                f.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    big.retain(|_, kib| *kib >= 256);
    json!({"rss_anon_kib": field("RssAnon:"), "rss_file_kib": field("RssFile:"), "mappings_kib": big})
}

fn cpu_ms(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux the agent supports.
    Some(ticks * 10.0)
}

/// Samples the agent every second until `stop`.
fn sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut v = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let (Some(rss_kib), Some(cpu_ms)) = (rss_kib(pid), cpu_ms(pid)) {
                v.push(Sample {
                    at_s: t0.elapsed().as_secs_f64(),
                    rss_kib,
                    cpu_ms,
                });
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        v
    })
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let r = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (r - lo as f64)
}

/// RSS (MiB) and CPU (% of one CPU, per second) over `[from, to)` seconds.
fn stats(samples: &[Sample], from: f64, to: f64) -> Value {
    let w: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_s >= from && s.at_s < to)
        .collect();
    let mut rss: Vec<f64> = w.iter().map(|s| s.rss_kib / 1024.0).collect();
    let mut cpu: Vec<f64> = w
        .windows(2)
        .map(|p| (p[1].cpu_ms - p[0].cpu_ms) / ((p[1].at_s - p[0].at_s) * 1000.0) * 100.0)
        .collect();
    let total_cpu = match (w.first(), w.last()) {
        (Some(a), Some(b)) if b.at_s > a.at_s => (b.cpu_ms - a.cpu_ms) / ((b.at_s - a.at_s) * 10.0),
        _ => f64::NAN,
    };
    json!({
        "samples": w.len(),
        "rss_mib": {"median": percentile(&mut rss, 50.0), "peak": percentile(&mut rss, 100.0)},
        "cpu_pct": {"median": percentile(&mut cpu, 50.0), "p95": percentile(&mut cpu, 95.0),
                    "peak": percentile(&mut cpu, 100.0), "mean": total_cpu},
    })
}

/// What the kubelet stand-in did, for the checks.
#[derive(Default)]
struct Done {
    /// (pod uid, pod name, namespace, attempt, container id, exit code, reason)
    crash_attempts: Vec<(String, String, String, u32, String, i32, String)>,
    /// (pod uid, pod name, container id)
    churn: Vec<(String, String, String)>,
    pods: Vec<Pod>,
}

fn api_pod(pod: &Pod, container: &str, id: Option<&str>, restarts: i32) -> Value {
    realistic_pod_json(
        &pod.namespace,
        &pod.name,
        &pod.uid,
        NODE,
        container,
        id,
        restarts,
    )
}

/// Starts `n` pods with `spec`, `START_PARALLEL` at a time; returns them
/// with their container ids.
async fn start_pods(
    api: &Arc<ApiServer>,
    ns: &str,
    names: Vec<String>,
    spec: &'static ContainerSpec<'static>,
) -> Vec<(Pod, String)> {
    let mut out = Vec::new();
    for chunk in names.chunks(START_PARALLEL) {
        let mut tasks = Vec::new();
        for name in chunk {
            let (api, ns, name) = (api.clone(), ns.to_owned(), name.clone());
            tasks.push(tokio::spawn(async move {
                let mut k = Kubelet::connect().await;
                let pod = k.run_pod(&ns, &name).await;
                api.upsert(api_pod(&pod, spec.name, None, 0));
                let id = k.start(&pod, spec, 0).await;
                api.upsert(api_pod(&pod, spec.name, Some(&id), 0));
                (pod, id)
            }));
        }
        for t in tasks {
            out.push(t.await.expect("starting a pod"));
        }
    }
    out
}

/// The kubelet's loop for a container that is OOM-killed at every start:
/// start, wait for the exit, back off (1 s doubling to 8 s), restart.
async fn crash_loop(
    api: Arc<ApiServer>,
    pod: Pod,
    stop: Arc<AtomicBool>,
) -> Vec<(String, String, String, u32, String, i32, String)> {
    let mut k = Kubelet::connect().await;
    let mut out = Vec::new();
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let id = k.start(&pod, &HOG, attempt).await;
        api.upsert(api_pod(&pod, HOG.name, Some(&id), attempt as i32));
        let (code, reason) = k.wait_exit(&id, Duration::from_secs(60)).await;
        out.push((
            pod.uid.clone(),
            pod.name.clone(),
            pod.namespace.clone(),
            attempt,
            id.clone(),
            code,
            reason,
        ));
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        backoff = (backoff * 2).min(Duration::from_secs(8));
        k.remove_container(&id).await;
        attempt += 1;
    }
    out
}

/// Short-lived pods: one starts every `CHURN_EVERY` and is removed after
/// `CHURN_LIFE`, so several start and stop each second.
async fn churn(
    api: Arc<ApiServer>,
    ns: String,
    stop: Arc<AtomicBool>,
) -> Vec<(String, String, String)> {
    let mut live: Vec<(Instant, tokio::task::JoinHandle<(Pod, String)>)> = Vec::new();
    let mut done = Vec::new();
    let mut n = 0;
    let mut tick = tokio::time::interval(CHURN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let remove = |api: Arc<ApiServer>, h: tokio::task::JoinHandle<(Pod, String)>| async move {
        let (pod, id) = h.await.expect("a churn pod");
        let mut k = Kubelet::connect().await;
        k.remove_container(&id).await;
        k.remove_pod(&pod).await;
        api.delete(&pod.uid);
        (pod.uid.clone(), pod.name.clone(), id)
    };
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (api2, ns2) = (api.clone(), ns.clone());
        let name = format!("churn-{n:04}");
        n += 1;
        live.push((
            Instant::now(),
            tokio::spawn(async move {
                let mut k = Kubelet::connect().await;
                let pod = k.run_pod(&ns2, &name).await;
                let id = k.start(&pod, &IDLE, 0).await;
                api2.upsert(api_pod(&pod, IDLE.name, Some(&id), 0));
                (pod, id)
            }),
        ));
        let (old, keep): (Vec<_>, Vec<_>) = live
            .into_iter()
            .partition(|(at, _)| at.elapsed() >= CHURN_LIFE);
        live = keep;
        for (_, h) in old {
            let api = api.clone();
            done.push(tokio::spawn(remove(api, h)));
        }
    }
    let mut out = Vec::new();
    for (_, h) in live {
        out.push(remove(api.clone(), h).await);
    }
    for h in done {
        out.push(h.await.expect("removing a churn pod"));
    }
    out
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

    // The cluster: 5,000 pods, all but this node's on 50 other nodes.
    let api = Arc::new(ApiServer::start());
    api.upsert_many((0..CLUSTER_PODS - NODE_PODS).map(|i| {
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
    let first = rt.block_on(start_pods(&api, &ns, vec!["app-000".into()], &IDLE));
    done.pods.extend(first.into_iter().map(|(p, _)| p));
    let one_from = at();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(3));
        agent.scrape();
    }
    let one_to = at();
    let one_pod_memory = memory_map(pid);

    // Phase 2: the node fills up to 110 pods, 10 of them crash-looping.
    let fill_from = at();
    let crash_names: Vec<String> = (0..CRASH_PODS).map(|i| format!("oom-{i:03}")).collect();
    let crash_pods: Vec<Pod> = rt.block_on(async {
        let mut v = Vec::new();
        for name in &crash_names {
            let mut k = Kubelet::connect().await;
            let pod = k.run_pod(&ns, name).await;
            api.upsert(api_pod(&pod, HOG.name, None, 0));
            v.push(pod);
        }
        v
    });
    let idle_names: Vec<String> = (1..NODE_PODS - CRASH_PODS)
        .map(|i| format!("app-{i:03}"))
        .collect();
    let idle = rt.block_on(start_pods(&api, &ns, idle_names, &IDLE));
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
                ))
            })
            .collect();
        let churn = tokio::spawn(churn(api.clone(), ns.clone(), stop.clone()));
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
    let report = json!({
        "config": {
            "node_pods": NODE_PODS, "crash_looping": CRASH_PODS, "cluster_pods": CLUSTER_PODS,
            "api_pods_per_node_listed": NODE_PODS,
            "churn_every_ms": CHURN_EVERY.as_millis(), "churn_life_ms": CHURN_LIFE.as_millis(),
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
