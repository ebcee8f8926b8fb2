//! Hardening and fault tests: signals, missing kernel pieces, a full ring
//! buffer, metadata sources going away and coming back, and odd input
//! from the system (process names, cgroup paths). All run for real.
mod common;

use std::{
    collections::HashSet,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use common::{
    agent::Agent,
    apiserver::{ApiServer, pod_json},
    kubelet::{ContainerSpec, HOG, require_runtime, run_to_exit},
    *,
};
use serde_json::Value;

/// Tests here change machine-wide state (tracefs, the test runtime) that
/// the others depend on: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// BPF program and link ids held by a process, from its fdinfo.
fn bpf_ids(pid: u32) -> (HashSet<u32>, HashSet<u32>) {
    let (mut progs, mut links) = (HashSet::new(), HashSet::new());
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (progs, links);
    };
    for e in rd.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let link = text.contains("link_type:");
        for l in text.lines() {
            if let Some(v) = l
                .strip_prefix("prog_id:")
                .and_then(|v| v.trim().parse().ok())
                && !link
            {
                progs.insert(v);
            }
            if let Some(v) = l
                .strip_prefix("link_id:")
                .and_then(|v| v.trim().parse().ok())
            {
                links.insert(v);
            }
        }
    }
    (progs, links)
}

fn loaded() -> (HashSet<u32>, HashSet<u32>) {
    let progs = aya::programs::loaded_programs()
        .flatten()
        .map(|p| p.id())
        .collect();
    let links = aya::programs::loaded_links()
        .flatten()
        .map(|l| l.id())
        .collect();
    (progs, links)
}

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT: the tracer exits within 2 s, flushes its records
/// (the stop record is last), removes its cgroups, and leaves no BPF
/// program or link behind.
#[test]
fn signals_exit_cleanly_and_release_bpf() {
    require_root();
    let _g = serial();
    for (sig, name) in [
        (15, "SIGTERM"),
        (2, "SIGINT"),
        (1, "SIGHUP"),
        (3, "SIGQUIT"),
    ] {
        let parent = parent(&format!("signal{sig}"));
        let (mut child, recs, lines) = start_holding(&parent, &[]);
        let (progs, links) = bpf_ids(child.id());
        assert!(progs.len() >= 7, "the tracer holds its programs: {progs:?}");
        let cgroup = recs.last().unwrap()["cgroup"].as_str().unwrap().to_owned();
        let sent = Instant::now();
        // SAFETY: plain syscall on our child.
        unsafe { kill(child.id() as i32, sig) };
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(2),
                "{name}: still running after 2 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "{name}: {status:?}");
        let rest: Vec<Value> = lines
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        let stop = rest.last().expect("records after the signal");
        assert_eq!(stop["event"], "stop");
        assert_eq!(stop["reason"], format!("signal {name}"));
        assert!(
            rest.iter().any(|r| r["event"] == "container_exit"),
            "{rest:#?}"
        );
        assert!(!cgroup_exists(&cgroup) && !cgroup_exists(&parent));
        // The kernel frees programs asynchronously (perf events and RCU):
        // give it a moment before calling anything left over.
        let mut waited = Duration::ZERO;
        let (now_progs, now_links) = loop {
            let (p, l) = loaded();
            if (progs.is_disjoint(&p) && links.is_disjoint(&l)) || waited > Duration::from_secs(5) {
                break (p, l);
            }
            std::thread::sleep(Duration::from_millis(50));
            waited += Duration::from_millis(50);
        };
        assert!(
            progs.is_disjoint(&now_progs),
            "{name}: programs left loaded: {:?}",
            progs.intersection(&now_progs)
        );
        assert!(
            links.is_disjoint(&now_links),
            "{name}: links left: {:?}",
            links.intersection(&now_links)
        );
    }
}

/// tracefs not mounted: the tracer mounts it and says so.
#[test]
fn mounts_tracefs_when_missing() {
    require_root();
    let _g = serial();
    // Unmount every tracefs (the mount can be stacked).
    while Command::new("umount")
        .arg("/sys/kernel/tracing")
        .status()
        .unwrap()
        .success()
    {}
    assert!(
        !Path::new("/sys/kernel/tracing/events").exists(),
        "tracefs still mounted"
    );
    let parent = parent("tracefs");
    let (recs, stderr, out) = run(&["--max-restarts", "0", "--cgroup-parent", &parent]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("mounted tracefs at /sys/kernel/tracing"),
        "{stderr}"
    );
    assert_eq!(events(&recs, "oom_kill").len(), 1);
}

/// No kernel BTF: a clear error naming what is missing, no cgroups made.
#[test]
fn missing_btf_is_a_clear_error() {
    let _g = serial();
    let parent = parent("nobtf");
    let (recs, stderr, out) = run(&["--btf", "/nonexistent/vmlinux", "--cgroup-parent", &parent]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/vmlinux") && stderr.contains("CONFIG_DEBUG_INFO_BTF"),
        "{stderr}"
    );
    assert!(recs.is_empty(), "no records without programs");
    assert!(!cgroup_exists(&parent));
}

/// A hook that cannot be attached (here: left out) degrades the tracer:
/// the startup line and the start record say so, and the rest works.
#[test]
fn a_missing_hook_degrades() {
    let _g = serial();
    let parent = parent("nohook");
    let (recs, stderr, out) = run(&[
        "--skip-hook",
        "tp_btf/rss_stat,tracepoint/kmem/rss_stat",
        "--max-restarts",
        "0",
        "--cgroup-parent",
        &parent,
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("missing: tp_btf/rss_stat (skipped (--skip-hook)), tracepoint/kmem/rss_stat (skipped (--skip-hook))"),
        "{stderr}"
    );
    let missing = recs[0]["hooks"]["missing"].as_array().unwrap();
    assert!(
        missing
            .iter()
            .any(|m| m["hook"] == "tracepoint/kmem/rss_stat")
    );
    // No anonymous ramp without rss_stat (the cgroup's file and shmem
    // growth has a hook of its own).
    assert!(!events(&recs, "alloc").iter().any(|r| r["kind"] == "anon"));
    assert_eq!(events(&recs, "oom_kill").len(), 1, "the OOM is still seen");
}

/// Without tp_btf for rss_stat (refused, or a kernel before 6.2), the
/// classic tracepoint carries the allocation ramp.
#[test]
fn rss_stat_falls_back_to_the_tracepoint() {
    let _g = serial();
    let parent = parent("rssfallback");
    let (recs, stderr, out) = run(&[
        "--skip-hook",
        "tp_btf/rss_stat",
        "--max-restarts",
        "0",
        "--cgroup-parent",
        &parent,
    ]);
    assert!(out.status.success(), "{stderr}");
    let active = recs[0]["hooks"]["active"].as_array().unwrap();
    assert!(
        active.iter().any(|h| h == "tracepoint/kmem/rss_stat"),
        "{active:?}"
    );
    let sizes: Vec<u64> = events(&recs, "alloc")
        .iter()
        .filter(|r| r["kind"] == "anon")
        .map(|r| r["anon_rss_bytes"].as_u64().unwrap())
        .collect();
    assert!(
        sizes.len() >= 3 && sizes.windows(2).all(|w| w[0] < w[1]),
        "{sizes:?}"
    );
}

/// A ring buffer too small for the load: losses are counted in the kernel,
/// reported as `lost` and in `stop`, and tracing goes on.
#[test]
fn full_ring_buffer_is_counted() {
    let _g = serial();
    let parent = parent("ringfull");
    let stress = stress();
    let (recs, stderr, out) = run(&[
        "--ring-buffer-size",
        "4Ki",
        "--alloc-step",
        "4Ki",
        "--memory-limit",
        "200Mi",
        "--restart-policy",
        "Never",
        "--cgroup-parent",
        &parent,
        "--",
        stress.to_str().unwrap(),
        "--step",
        "64Mi",
        "--interval",
        "1ms",
        "--max",
        "128Mi",
    ]);
    assert!(out.status.success(), "{stderr}");
    let lost: u64 = events(&recs, "lost")
        .iter()
        .map(|r| r["ringbuf_full"].as_u64().unwrap())
        .sum();
    let stop = recs.last().unwrap();
    assert!(
        lost > 0,
        "a 4Ki buffer under a 4Ki-step ramp loses records: {stop}"
    );
    assert_eq!(stop["lost_events"].as_u64().unwrap(), lost);
    assert!(stderr.contains("records lost so far"), "{stderr}");
    assert_eq!(
        events(&recs, "container_exit")[0]["reason"],
        "Completed",
        "the run went on"
    );
}

/// Process names with spaces, quotes and invalid UTF-8 stay valid JSON.
#[test]
fn odd_process_names_are_valid_json() {
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("oom-tracer-odd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"a \"q\"\\\xff\xfe");
    let exe = dir.join(name);
    std::fs::copy(stress(), &exe).unwrap();
    let parent = parent("oddname");
    let out = Command::new(TRACER)
        .args([
            "run",
            "--restart-policy",
            "Never",
            "--cgroup-parent",
            &parent,
            "--",
        ])
        .arg(&exe)
        .args(["--max", "8Mi", "--interval", "1ms"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8 whatever the names");
    let recs: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let exec = events(&recs, "exec")[0];
    assert_eq!(exec["comm"], "a \"q\"\\\\\\xff\\xfe");
}

/// An OOM kill in a cgroup of no known shape (not Kubernetes, odd
/// characters) is still reported by the agent, by its path.
#[test]
fn unknown_cgroup_shapes_are_reported() {
    require_root();
    let _g = serial();
    let agent = Agent::start_with(&["--no-cri", "--kube-api", "off"]);
    let memroot = if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        PathBuf::from("/sys/fs/cgroup/memory")
    } else {
        PathBuf::from("/sys/fs/cgroup")
    };
    let rel = format!("oom-tracer-test-odd-{}/we ird\tname ü", std::process::id());
    let dir = memroot.join(&rel);
    std::fs::create_dir_all(&dir).unwrap();
    let limit = if dir.join("memory.limit_in_bytes").exists() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    std::fs::write(dir.join(limit), "20971520").unwrap();
    let procs = dir.join("cgroup.procs");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > \"$0\" && exec {} --step 5Mi --interval 5ms",
            stress().display()
        ))
        .arg(&procs)
        .status()
        .unwrap();
    assert!(!st.success(), "stress is OOM-killed");
    let recs = agent.stop();
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(dir.parent().unwrap());
    let kill = recs
        .iter()
        .find(|r| r["event"] == "oom_kill" && r["victim_cgroup"] == format!("/{rel}").as_str())
        .unwrap_or_else(|| panic!("no kill in /{rel}: {recs:#?}"));
    assert!(kill["pod"].is_null());
    assert_eq!(kill["memcg"]["path"], format!("/{rel}").as_str());
}

/// The API server goes away and comes back: the agent degrades (logged),
/// keeps tracing, and recovers its metadata.
#[test]
fn api_server_down_then_back() {
    require_runtime();
    let _g = serial();
    let api = ApiServer::start();
    let port = api.port;
    let kubeconfig = api.kubeconfig(&std::env::temp_dir());
    let agent = Agent::start_with(&[
        "--no-cri",
        "--node-name",
        "node-a",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    drop(api);
    std::thread::sleep(Duration::from_secs(2));
    let api = ApiServer::start_on(port);
    // The watcher retries with back-off: the pod runs once the agent says
    // the source is back (a kill before that has no API metadata to give).
    let until = Instant::now() + Duration::from_secs(60);
    while !agent
        .stderr_text()
        .contains("Kubernetes API source recovered")
    {
        assert!(
            Instant::now() < until,
            "the agent did not recover the API source in 60 s:\n{}",
            agent.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let slow = ContainerSpec {
        name: "hog",
        args: &["--step", "2Mi", "--interval", "50ms"],
        memory_limit: Some(50 << 20),
    };
    let (pod, ..) = run_to_exit("team-f", "flaky-api", &slow, |pod, id| {
        api.upsert(pod_json(
            "team-f",
            "flaky-api",
            &pod.uid,
            "node-a",
            "hog",
            id,
            0,
        ));
    });
    let stderr = agent.stderr_text();
    let recs = agent.stop();
    assert!(
        stderr.contains("Kubernetes API source degraded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Kubernetes API source recovered"),
        "{stderr}"
    );
    let kill = recs
        .iter()
        .find(|r| r["event"] == "oom_kill" && r["pod"]["uid"] == pod.uid.as_str())
        .expect("kill reported");
    assert_eq!(kill["pod"]["name"], "flaky-api", "metadata is back");
}

/// The container runtime goes away and comes back: the agent logs it, and
/// names containers again once it is back.
#[test]
fn cri_down_then_back() {
    require_runtime();
    let _g = serial();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let agent = Agent::start(&["--rescan-interval", "300ms"]);
    let st = Command::new("bash")
        .arg(root.join("tests/containerd/teardown.sh"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::thread::sleep(Duration::from_secs(1));
    let st = Command::new("bash")
        .arg(root.join("tests/containerd/setup.sh"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let (pod, ..) = run_to_exit("team-g", "flaky-cri", &HOG, |_, _| {});
    let stderr = agent.stderr_text();
    let recs = agent.stop();
    assert!(
        stderr.contains("unavailable, records lack its metadata"),
        "{stderr}"
    );
    assert!(stderr.contains("recovered"), "{stderr}");
    let kill = recs
        .iter()
        .find(|r| r["event"] == "oom_kill" && r["pod"]["uid"] == pod.uid.as_str())
        .unwrap_or_else(|| panic!("no kill of pod {} in {recs:#?}\n{stderr}", pod.uid));
    assert_eq!(kill["pod"]["name"], "flaky-cri");
    assert_eq!(kill["container"]["name"], "hog");
}
