//! Kernel records never wait for names: with the container runtime hung,
//! slow or flapping, or the API server hung or failing, a burst of new
//! containers in real pods (containerd's CRI, real memory cgroups under
//! kubepods) is OOM-killed, and every kill is on the agent's stdout soon
//! after its kernel time, none lost; the names follow once the source
//! answers.
//!
//! The bound asserted is generous (a loaded 2-core machine runs these);
//! each test prints the measured kill → stdout latency (p50/p99/max):
//! `cargo test --test drain -- --test-threads 1 --nocapture`, with
//! `OOM_TRACER_TEST_BURST=n` for bursts of `n` hogs (default 3 or 4).
mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    time::{Duration, SystemTime},
};

use common::{
    agent::Agent,
    apiserver::kubeconfig_for,
    cri_proxy::{CriProxy, Trouble},
    kubelet::{ContainerSpec, HOG, Kubelet, Pod, SOCKET, require_runtime},
};
use serde_json::Value;

/// The bound asserted, kill (kernel time) → the line read by the test.
const BOUND: Duration = Duration::from_secs(1);

/// A container killed about 12 s after its start: its names have come
/// by then whenever the runtime answers at all.
const SLOW_RAMP: ContainerSpec<'static> = ContainerSpec {
    name: "ramp",
    args: &["--step", "1Mi", "--interval", "250ms"],
    memory_limit: Some(50 << 20),
};

struct Started {
    pod: Pod,
    id: String,
    slow: bool,
}

/// `fast` pods with a hog (`OOM_TRACER_TEST_BURST` if set) and `slow`
/// with a slow ramp, started one after the other as fast as the runtime
/// allows, each run to its OOM kill.
fn burst(tag: &str, fast: usize, slow: usize) -> Vec<Started> {
    let fast = std::env::var("OOM_TRACER_TEST_BURST")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(fast);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut k = Kubelet::connect().await;
        let mut started = Vec::new();
        for i in 0..fast + slow {
            let slow = i >= fast;
            let pod = k.run_pod("burst", &format!("{tag}-{i}")).await;
            let spec = if slow { &SLOW_RAMP } else { &HOG };
            let id = k.start(&pod, spec, 0).await;
            started.push(Started { pod, id, slow });
        }
        for s in &started {
            let (code, reason) = k.wait_exit(&s.id, Duration::from_secs(60)).await;
            assert_eq!((code, reason.as_str()), (137, "OOMKilled"), "{}", s.id);
        }
        for s in &started {
            k.remove_container(&s.id).await;
            k.remove_pod(&s.pod).await;
        }
        started
    })
}

fn time_of(r: &Value) -> SystemTime {
    humantime::parse_rfc3339(r["time"].as_str().unwrap()).unwrap()
}

/// Every container's one kill, with how late the test read it.
fn kills<'a>(recs: &'a [(Value, SystemTime)], burst: &[Started]) -> Vec<(&'a Value, Duration)> {
    burst
        .iter()
        .map(|s| {
            let found: Vec<_> = recs
                .iter()
                .filter(|(r, _)| r["event"] == "oom_kill" && r["container"]["id"] == s.id.as_str())
                .collect();
            assert_eq!(found.len(), 1, "one kill for {}: {found:#?}", s.id);
            let (r, read) = found[0];
            assert_eq!(r["pod"]["uid"], s.pod.uid.as_str(), "the path's pod uid");
            let late = read.duration_since(time_of(r)).unwrap_or_default();
            (r, late)
        })
        .collect()
}

/// Prints p50/p99/max of `lat` and asserts the bound.
fn report(what: &str, mut lat: Vec<Duration>) {
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "kill -> stdout, {what}: n={} p50={:?} p99={:?} max={:?}",
        lat.len(),
        at(0.5),
        at(0.99),
        lat[lat.len() - 1]
    );
    assert!(*lat.last().unwrap() < BOUND, "{what}: {lat:?}");
}

/// Every container started (its first exec) and ended, names or not.
fn lifecycle_complete(recs: &[(Value, SystemTime)], burst: &[Started]) {
    for s in burst {
        let of = |event: &str| {
            recs.iter()
                .filter(|(r, _)| r["event"] == event && r["container"]["id"] == s.id.as_str())
                .count()
        };
        assert_eq!(of("container_start"), 1, "start of {}", s.id);
        assert_eq!(of("container_exit"), 1, "exit of {}", s.id);
    }
}

fn names_of(r: &Value) -> (Value, Value, Value) {
    (
        r["pod"]["namespace"].clone(),
        r["pod"]["name"].clone(),
        r["container"]["name"].clone(),
    )
}

/// The agent against a runtime in `trouble`: a burst of `fast` hogs and
/// `slow` ramps. Returns the records and the burst.
fn against(trouble: Trouble, fast: usize, slow: usize) -> (Vec<(Value, SystemTime)>, Vec<Started>) {
    require_runtime();
    let proxy = CriProxy::start(trouble);
    let agent = Agent::start_with(&[
        "--cri-socket",
        proxy.socket().to_str().unwrap(),
        "--kube-api",
        "off",
    ]);
    let tag = format!("{trouble:?}").to_lowercase();
    let tag: String = tag
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let started = burst(&tag, fast, slow);
    let recs = agent.stop_timed();
    drop(proxy);
    (recs, started)
}

/// A runtime that accepts and never answers: every kill on time, with the
/// ids the cgroup path gives and null names; nothing lost.
#[test]
fn runtime_hung() {
    let (recs, started) = against(Trouble::Hung, 4, 0);
    let k = kills(&recs, &started);
    for (r, _) in &k {
        assert_eq!(
            names_of(r),
            (Value::Null, Value::Null, Value::Null),
            "{r:#}"
        );
        assert_eq!(r["memcg"]["level"], "container");
    }
    report("runtime hung", k.into_iter().map(|(_, l)| l).collect());
    lifecycle_complete(&recs, &started);
}

/// A runtime that answers each call 2 s late: kills on time; the names are
/// on the kills that come after the runtime answered.
#[test]
fn runtime_slow() {
    let (recs, started) = against(Trouble::Slow(Duration::from_secs(2)), 3, 3);
    let k = kills(&recs, &started);
    for (s, (r, _)) in started.iter().zip(&k) {
        if s.slow {
            assert_eq!(r["container"]["name"], "ramp", "{r:#}");
            assert_eq!(r["pod"]["name"], s.pod.name.as_str(), "{r:#}");
        }
    }
    report(
        "runtime slow (2 s)",
        k.into_iter().map(|(_, l)| l).collect(),
    );
    lifecycle_complete(&recs, &started);
}

/// A runtime up 3 s, down 1 s, in turns: kills on time, names back.
#[test]
fn runtime_flapping() {
    let trouble = Trouble::Flapping {
        up: Duration::from_secs(3),
        down: Duration::from_secs(1),
    };
    let (recs, started) = against(trouble, 3, 3);
    let k = kills(&recs, &started);
    for (s, (r, _)) in started.iter().zip(&k) {
        if s.slow {
            assert_eq!(r["container"]["name"], "ramp", "{r:#}");
        }
    }
    report("runtime flapping", k.into_iter().map(|(_, l)| l).collect());
    lifecycle_complete(&recs, &started);
}

/// The healthy runtime, for comparison: names on every kill.
#[test]
fn runtime_healthy() {
    require_runtime();
    let agent = Agent::start(&[]);
    let started = burst("healthy", 4, 0);
    let recs = agent.stop_timed();
    let k = kills(&recs, &started);
    for (r, _) in &k {
        assert_eq!(r["container"]["name"], "hog", "{r:#}");
        assert_eq!(r["pod"]["namespace"], "burst", "{r:#}");
    }
    report("runtime healthy", k.into_iter().map(|(_, l)| l).collect());
    lifecycle_complete(&recs, &started);
}

/// An API server that accepts and never answers, and one that answers
/// 500 to everything, with Events on: kills on time, named by the runtime.
#[test]
fn api_hung_or_failing() {
    require_runtime();
    for (what, answer) in [("hung", None), ("500", Some(500))] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || bad_api(&listener, answer));
        let kubeconfig = kubeconfig_for(port, &std::env::temp_dir());
        let agent = Agent::start_with(&[
            "--cri-socket",
            SOCKET,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--node-name",
            "node-a",
            "--post-events",
        ]);
        let started = burst(&format!("api{what}"), 3, 0);
        let recs = agent.stop_timed();
        let k = kills(&recs, &started);
        for (r, _) in &k {
            assert_eq!(r["container"]["name"], "hog", "{r:#}");
        }
        report(
            &format!("API {what}"),
            k.into_iter().map(|(_, l)| l).collect(),
        );
        lifecycle_complete(&recs, &started);
    }
}

/// Holds every connection without a word (`None`), or answers every
/// request with `status`.
fn bad_api(listener: &TcpListener, status: Option<u16>) {
    let mut held = Vec::new();
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { return };
        let Some(status) = status else {
            held.push(conn);
            continue;
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    return;
                }
                let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}"#;
                let reply = format!(
                    "HTTP/1.1 {status} Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if conn.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
}
