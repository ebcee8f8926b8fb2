//! The DaemonSet test's scenario, on whichever node runs it: the agent's
//! pod from the DaemonSet's template and the example pod through three OOM
//! kills on the node's containerd, with the agent's CRI log read back and
//! its records checked. `daemonset.rs` runs it on this machine (cgroup v1,
//! the host's cgroup namespace); `daemonset_v2.rs` runs it inside the
//! cgroup v2 guest of scripts/qemu-v2.sh, where containerd gives the
//! agent's container a private cgroup namespace.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use crate::{
    checks::{agent_memory, check_read_only, check_records, json_lines},
    cluster::{Cleanup, Cluster, import_images, rt},
    common::{
        deploy,
        kubelet::{Kubelet, require_runtime},
        node::{self, Prober},
    },
    lifecycle::{EXITED, RUNNING, crash_loop, start_agent},
    pods::{agent_pod, example_pod},
};

/// What a run leaves to be checked again, or kept: the example pod's uid
/// and the container id of each attempt.
pub(crate) struct Outcome {
    pub(crate) uid: String,
    pub(crate) attempts: Vec<String>,
    /// The agent's CRI log file as the runtime wrote it (the kubelet's
    /// part removes the file with the pod).
    pub(crate) log: Vec<u8>,
    /// The agent's /proc/<pid>/cgroup, as the agent sees it.
    pub(crate) own_cgroup: String,
    /// The records on the agent's stdout.
    pub(crate) records: Vec<serde_json::Value>,
}

/// The DaemonSet's pod and the example pod on the real runtime: three OOM
/// kills, each reported with the pod's identity, its memory breakdown,
/// cause and task list, read from the agent's CRI log; probes from the pod
/// network; the agent within its limits. `v2`: the node is cgroup v2 and
/// the agent's container must have a private cgroup namespace.
pub(crate) fn runs_as_deployed(v2: bool) -> Outcome {
    runs_with_overlay(v2, None)
}

/// [`runs_as_deployed`] with the DaemonSet as the kustomize overlay
/// `deploy/<overlay>/` changes it.
pub(crate) fn runs_with_overlay(v2: bool, overlay: Option<&str>) -> Outcome {
    require_runtime();
    import_images();
    let cluster = Cluster::start("oom-tracer", "oom-tracer");
    let adds = overlay.map(deploy::overlay_adds).unwrap_or_default();
    let agent = agent_pod(&cluster, |t| {
        for (path, value) in adds {
            deploy::add_at(t, &path, value);
        }
    });
    let example = example_pod(&cluster);
    let mut cleanup = Cleanup::default();
    let rt = rt();
    let mut k = rt.block_on(Kubelet::connect());

    let (_, ip, agent_id, created) =
        rt.block_on(start_agent(&mut k, &cluster, &agent, &mut cleanup));
    let ip: IpAddr = ip.parse().unwrap();
    let c = &agent.containers[0];
    let readiness = c.readiness.clone().expect("a readinessProbe");
    let liveness = c.liveness.clone().expect("a livenessProbe");
    // Start → ready: from the container's start (the runtime's started_at)
    // to the first success of a tight (20 ms) poll of the readiness endpoint.
    let ready = node::wait_http_ok(
        SocketAddr::new(ip, readiness.port),
        &readiness.path,
        Duration::from_secs(60),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let st = rt.block_on(k.status(&agent_id));
    assert!(
        ready.is_some(),
        "{ip}:{}{} never answered (agent state {}, exit {}); its log:\n{}",
        readiness.port,
        readiness.path,
        st.state,
        st.exit_code,
        std::fs::read_to_string(node::log_path(&agent, "agent", 0)).unwrap_or_default()
    );
    let ready_after = now.saturating_sub(Duration::from_nanos(st.started_at as u64));
    let created_to_ready = created.elapsed();
    // Then the kubelet's own probes, on its schedule, for the whole run.
    let probers = [Prober::start(&readiness, ip), Prober::start(&liveness, ip)];
    std::thread::sleep(Duration::from_secs(2));
    let (pid, idle_rss_kib, idle_memcg) = agent_memory(&agent, &agent_id);
    let own_cgroup = cgroup_view(pid, v2);
    let writable_below = check_read_only(&agent, pid, cluster.node.recursive_read_only);

    cleanup.pod(&example);
    node::prepare(&example);
    let attempts = rt.block_on(crash_loop(
        &mut k,
        &cluster,
        &example,
        &agent_id,
        &mut cleanup,
    ));
    // The last records drain (bulk records every 100 ms).
    std::thread::sleep(Duration::from_secs(1));

    // The agent: never restarted, within its memory limit, probes passing.
    let st = rt.block_on(k.status(&agent_id));
    assert_eq!(st.state, RUNNING, "the agent exited: {}", st.exit_code);
    let memcg = node::memcg_dir(&agent, &agent_id);
    let peak = node::read_u64(&memcg.join("memory.max_usage_in_bytes"))
        .or_else(|| node::read_u64(&memcg.join("memory.peak")))
        .unwrap();
    // v1: memory.failcnt; v2: the `max` count of memory.events.
    let failcnt = node::read_u64(&memcg.join("memory.failcnt"))
        .or_else(|| node::memory_event(&memcg, "max"))
        .expect("memory.failcnt (v1) or memory.events (v2) of the agent's memcg");
    let limit = c.memory_limit.expect("a memory limit") as u64;
    assert!(peak < limit, "memcg peak {peak} >= limit {limit}");
    assert_eq!(
        failcnt, 0,
        "the agent's memcg hit its limit {failcnt} times"
    );
    let [readiness_probe, liveness_probe] = probers;
    let ready_results = readiness_probe.stop();
    let live_results = liveness_probe.stop();
    assert!(
        Prober::worst_failure_run(&live_results) < liveness.failure_threshold,
        "the liveness probe failed {} times in a row: the kubelet would have restarted the \
         agent: {live_results:?}",
        liveness.failure_threshold
    );
    assert!(
        !live_results.is_empty() && ready_results.iter().all(|(_, r)| node::probe_ok(r)),
        "readiness {ready_results:?}, liveness {live_results:?}"
    );

    // Stopped as the kubelet stops a pod: SIGTERM, then the grace period.
    rt.block_on(k.stop_container(&agent_id, agent.grace_period));
    let st = rt.block_on(k.status(&agent_id));
    assert_eq!((st.state, st.exit_code), (EXITED, 0), "{}", st.reason);

    // Its log, as `kubectl logs` reads it: JSON lines only (json_lines
    // checks every line of both streams), the diagnostics with time, level
    // and message, and the records of the three kills.
    let (records, diagnostics) = json_lines(&node::log_path(&agent, "agent", 0));
    assert!(!diagnostics.is_empty());
    for d in &diagnostics {
        for key in ["timestamp", "level", "message"] {
            assert!(d[key].is_string(), "diagnostic without {key}: {d}");
        }
    }
    check_records(
        &records,
        if v2 { "v2" } else { "v1" },
        &example.uid,
        &attempts,
    );
    // With only BPF and PERFMON, under the runtime's default seccomp
    // profile, no hook is refused for want of a privilege: whatever is
    // missing is missing from the kernel, not from the pod spec.
    let hooks = diagnostics
        .iter()
        .filter_map(|d| d["message"].as_str())
        .find(|m| m.starts_with("hooks active: "))
        .unwrap_or_else(|| panic!("no \"hooks active\" startup line: {diagnostics:#?}"));
    for refusal in ["Operation not permitted", "missing CAP_"] {
        assert!(
            !hooks.contains(refusal),
            "a hook was refused in the pod's security context: {hooks}"
        );
    }
    let active = hooks["hooks active: ".len()..]
        .split(';')
        .next()
        .unwrap_or_default()
        .split(", ")
        .filter(|h| !h.is_empty() && *h != "none")
        .count();
    assert!(active > 0, "{hooks}");
    let load = diagnostics
        .iter()
        .filter_map(|d| d["message"].as_str())
        .find(|m| m.starts_with("loaded and attached "))
        .unwrap_or("no \"loaded and attached\" line");
    // The API source: this node's pods, with the service account's token.
    let requests = cluster.api.requests();
    assert!(
        requests.iter().any(|r| r.contains("/api/v1/pods")
            && r.contains(&format!("spec.nodeName%3D{}", cluster.node.name))),
        "{requests:?}"
    );
    let refused = cluster.api.unauthorized();
    assert!(
        refused.is_empty(),
        "requests without the token: {refused:?}"
    );

    eprintln!(
        "measure: {active} hooks active ({load}); agent container start -> /readyz {} ms \
         ({} ms from CreateContainer); idle RSS {idle_rss_kib} KiB; idle memcg usage {} KiB; memcg peak {} KiB of {} KiB; \
         readiness probes {} ok; liveness probes {} ok",
        ready_after.as_millis(),
        created_to_ready.as_millis(),
        idle_memcg / 1024,
        peak / 1024,
        limit / 1024,
        ready_results.len(),
        live_results.len()
    );
    if !writable_below.is_empty() {
        eprintln!(
            "finding: the runtime has no recursive read-only mounts, so these mounts beneath \
             the agent's readOnly volumes stay writable: {writable_below:?}"
        );
    }
    Outcome {
        uid: example.uid.clone(),
        attempts,
        log: std::fs::read(node::log_path(&agent, "agent", 0)).unwrap(),
        own_cgroup,
        records,
    }
}

/// The agent's own cgroup as it sees it: its /proc/<pid>/cgroup read from
/// within its cgroup namespace (the kernel writes the paths relative to
/// the reader's namespace root), as its /proc/self/cgroup reads. On v2 the
/// container must have a cgroup namespace of its own, rooted at its
/// cgroup, as containerd gives it: `0::/`. On v1 containerd 1.6 leaves it
/// in the node's, where it sees its container's path.
fn cgroup_view(pid: u32, v2: bool) -> String {
    let ns = |p: &str| {
        std::fs::read_link(format!("/proc/{p}/ns/cgroup"))
            .unwrap_or_else(|e| panic!("/proc/{p}/ns/cgroup: {e}"))
    };
    let private = ns(&pid.to_string()) != ns("self");
    let out = std::process::Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--cgroup", "cat"])
        .arg(format!("/proc/{pid}/cgroup"))
        .output()
        .expect("running nsenter (util-linux) to read the agent's cgroup view");
    assert!(
        out.status.success(),
        "nsenter --cgroup into the agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = String::from_utf8_lossy(&out.stdout).into_owned();
    if v2 {
        assert!(
            private,
            "the agent's container shares the node's cgroup namespace; containerd on cgroup \
             v2 gives every container its own"
        );
        assert_eq!(
            seen.trim(),
            "0::/",
            "the agent's /proc/self/cgroup in its private cgroup namespace"
        );
    } else {
        let memory = seen
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == "memory"))
            })
            .unwrap_or_else(|| panic!("no memory line in the agent's /proc/self/cgroup: {seen:?}"));
        assert!(
            !private && memory.contains("/kubepods/"),
            "the agent's view of its memory cgroup on v1: {memory:?} (private namespace: \
             {private})"
        );
    }
    eprintln!(
        "agent's cgroup namespace: {}; /proc/self/cgroup as it sees it: {:?}",
        if private { "private" } else { "the node's" },
        seen.trim()
    );
    seen
}
