//! The DaemonSet as it is deployed: `deploy/` read as `kubectl apply -k`
//! sends it, its pod template translated field by field the way the
//! kubelet does (`common::podspec`), and run on the test containerd + runc
//! through the CRI, from the images `cargo xtask images` built from
//! `deploy/*.Dockerfile`. The example pod (`deploy/oom-example-pod.yaml`)
//! runs the same way and is restarted with the kubelet's back-off through
//! three OOM kills. The agent's output is read from its CRI log file, the
//! file `kubectl logs` and log collectors read.
//!
//! What stands in for what a cluster has: the kubelet (this test, over the
//! CRI), the API server (`common::apiserver`, over TLS, checking the
//! service account token), the node's runtime directory (/run/containerd
//! is the test containerd's /run/oom-tracer-test).
//!
//! Its support is in `daemonset/`: `cluster` (the node, the API server,
//! the images, the cleanup), `pods` (the pods of `deploy/`, translated),
//! `lifecycle` (the kubelet's steps: admit, start, crash loop, status) and
//! `checks` (what is read back: memory, mounts, the log, the records).
#[path = "daemonset/checks.rs"]
mod checks;
#[path = "daemonset/cluster.rs"]
mod cluster;
mod common;
#[path = "daemonset/lifecycle.rs"]
mod lifecycle;
#[path = "daemonset/pods.rs"]
mod pods;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use checks::{agent_memory, check_read_only, check_records, json_lines};
use cluster::{Cleanup, Cluster, images_dir, import_images, rt};
use common::{
    deploy,
    kubelet::{Kubelet, require_runtime},
    node::{self, Prober},
    podspec::{self, Node},
};
use lifecycle::{EXITED, RUNNING, crash_loop, start_agent};
use pods::{agent_pod, example_pod};
use serde_json::{Value, json};

/// The images hold one static binary each, with the ENTRYPOINT and USER
/// the manifests rely on.
#[test]
fn images_hold_one_static_binary() {
    for (name, binary, entrypoint, user) in [
        (
            "agent",
            "oom-tracer",
            json!(["/oom-tracer", "agent"]),
            "0:0",
        ),
        ("stress", "stress", json!(["/stress"]), "65534:65534"),
    ] {
        let archive = images_dir().join(format!("{name}.tar"));
        let image = common::oci::read(&archive);
        assert_eq!(image.config["config"]["Entrypoint"], entrypoint, "{name}");
        assert_eq!(image.config["config"]["User"], user, "{name}");
        assert_eq!(
            image
                .files
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>(),
            [binary],
            "{name}: files in the image"
        );
        common::oci::check_static(&image.files[0].1)
            .unwrap_or_else(|e| panic!("{name}: /{binary} is not a static executable: {e}"));
        eprintln!(
            "measure: image {} archive {} bytes, layers {} bytes, binary {} bytes",
            name,
            std::fs::metadata(&archive).unwrap().len(),
            image.layer_bytes,
            image.files[0].1.len()
        );
    }
    // The DaemonSet runs the image's ENTRYPOINT (no command) as uid 0, the
    // example pod as 65534: the images must say the same.
    let objects = deploy::kustomization();
    let c = &deploy::only(&objects, "DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        c.get("command").is_none(),
        "the DaemonSet relies on the ENTRYPOINT"
    );
    assert_eq!(c["securityContext"]["runAsUser"], 0);
    let pod = &deploy::load(&deploy::workspace().join("deploy/oom-example-pod.yaml"))[0];
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["runAsUser"],
        65534
    );
}

/// A field the translation does not handle fails with its path.
#[test]
fn untranslated_fields_are_named() {
    let dir = std::env::temp_dir();
    let node = Node {
        name: "n".into(),
        labels: [("kubernetes.io/os".to_owned(), "linux".to_owned())].into(),
        api: "10.0.0.1:443".parse().unwrap(),
        ca_pem: String::new(),
        host_paths: [
            "/sys/fs/cgroup",
            "/sys/kernel/btf",
            "/sys/kernel/tracing",
            "/run/containerd",
        ]
        .into_iter()
        .map(|p| (p, dir.clone(), "test"))
        .collect(),
        pods_dir: dir.clone(),
        logs_dir: dir.clone(),
        memory_capacity: 1 << 30,
        recursive_read_only: false,
    };
    let objects = deploy::kustomization();
    let ds = deploy::only(&objects, "DaemonSet");
    let mut template = ds["spec"]["template"].clone();
    let pod = podspec::pod_from_template(&template, "oom-tracer", "oom-tracer-", ds);
    assert!(
        podspec::translate(&pod, &node, "as committed").is_ok(),
        "the committed template translates"
    );
    template["spec"]["shareProcessNamespace"] = json!(true);
    template["spec"]["containers"][0]["lifecycle"] =
        json!({"preStop": {"exec": {"command": ["x"]}}});
    template["spec"]["containers"][0]["securityContext"]["seccompProfile"]["type"] =
        json!("Localhost");
    template["spec"]["volumes"][0]["emptyDir"] = json!({});
    let pod = podspec::pod_from_template(&template, "oom-tracer", "oom-tracer-", ds);
    let Err(fields) = podspec::translate(&pod, &node, "edited") else {
        panic!("untranslated fields passed")
    };
    for f in [
        "spec.shareProcessNamespace",
        "spec.containers[0].lifecycle",
        "spec.containers[0].securityContext.seccompProfile.type = Localhost",
        "spec.volumes[0].emptyDir",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} not named in {fields:?}");
    }
}

/// The DaemonSet's pod and the example pod on the real runtime: three OOM
/// kills, each reported with the pod's identity, read from the agent's
/// CRI log; probes from the pod network; the agent within its limits.
#[test]
fn daemonset_runs_as_deployed() {
    require_runtime();
    import_images();
    let cluster = Cluster::start("oom-tracer", "oom-tracer");
    let agent = agent_pod(&cluster, |_| {});
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
    let failcnt = node::read_u64(&memcg.join("memory.failcnt")).unwrap_or(0);
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
    check_records(&records, &example, &attempts);
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
}

/// With `capability` taken out of the DaemonSet's `add` list, the agent
/// exits non-zero and its log says which capability is missing, in words
/// ("missing CAP_PERFMON"), and does not blame the one it has.
fn without_capability(capability: &str) {
    require_runtime();
    import_images();
    let cluster = Cluster::start("oom-tracer", "oom-tracer");
    let plan = agent_pod(&cluster, |t| {
        let add = t["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
            .as_array_mut()
            .unwrap();
        let before = add.len();
        add.retain(|c| c != capability);
        assert_eq!(
            add.len() + 1,
            before,
            "{capability} is in the DaemonSet's add list"
        );
    });
    let mut cleanup = Cleanup::default();
    let rt = rt();
    let mut k = rt.block_on(Kubelet::connect());
    let (_, _, id, _) = rt.block_on(start_agent(&mut k, &cluster, &plan, &mut cleanup));
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        let st = rt.block_on(k.status(&id));
        if st.state == EXITED {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the agent without {capability} kept running"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (_, diagnostics) = json_lines(&node::log_path(&plan, "agent", 0));
    let log: Vec<String> = diagnostics.iter().map(Value::to_string).collect();
    assert_ne!(st.exit_code, 0, "{log:#?}");
    let errors: Vec<&str> = diagnostics
        .iter()
        .filter(|d| d["level"] == "ERROR")
        .filter_map(|d| d["message"].as_str())
        .collect();
    let missing = format!("missing CAP_{capability}");
    let other = if capability == "BPF" {
        "PERFMON"
    } else {
        "BPF"
    };
    assert!(
        errors.iter().any(|m| m.contains(&missing)),
        "no error saying \"{missing}\" in the agent's log:\n{}",
        log.join("\n")
    );
    assert!(
        !errors
            .iter()
            .any(|m| m.contains(&format!("missing CAP_{other}"))),
        "the agent blames CAP_{other}, which it has:\n{}",
        log.join("\n")
    );
    eprintln!(
        "without {capability}: exit {}; log:\n{}",
        st.exit_code,
        log.join("\n")
    );
}

#[test]
fn agent_without_perfmon_names_it() {
    without_capability("PERFMON");
}

#[test]
fn agent_without_bpf_names_it() {
    without_capability("BPF");
}
