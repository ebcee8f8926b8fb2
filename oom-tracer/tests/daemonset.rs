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
mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::{
    apiserver::ApiServer,
    deploy,
    kubelet::{Kubelet, require_runtime},
    node::{self, LogLine, Prober},
    pki,
    podspec::{self, Node, PodPlan},
};
use serde_json::{Value, json};

/// CRI ContainerState.
const RUNNING: i32 = 1;
const EXITED: i32 = 2;
/// The kubelet's crash-loop back-off: 10 s, doubling.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// OOM kills of the example pod.
const KILLS: u32 = 3;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn images_dir() -> PathBuf {
    deploy::workspace().join("target/images")
}

/// Imports both images into the test runtime, once per test binary.
fn import_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for name in ["agent", "stress"] {
            let names = node::import_image(&images_dir().join(format!("{name}.tar")));
            eprintln!("imported {name}.tar: {names:?}");
        }
    });
}

/// The node, the API server stand-in and the cluster's CA.
struct Cluster {
    node: Node,
    api: ApiServer,
}

impl Cluster {
    /// The API server serves the agent's service account (`namespace`/`sa`).
    fn start(namespace: &str, sa: &str) -> Self {
        let gateway = node::pod_gateway();
        let pki = pki::for_ip(gateway);
        let name = format!("node-{}", &common::kubelet::new_uid()[..8]);
        let mut node = Node {
            name: name.clone(),
            labels: [
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/hostname", name.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            api: SocketAddr::new(gateway, 0),
            ca_pem: pki.ca_pem,
            host_paths: vec![(
                "/run/containerd",
                PathBuf::from("/run/oom-tracer-test"),
                "the node's containerd runs here with its socket at \
                 /run/oom-tracer-test/containerd.sock",
            )],
            pods_dir: PathBuf::from(node::PODS_DIR),
            logs_dir: PathBuf::from(node::LOGS_DIR),
            memory_capacity: podspec::mem_total(),
            recursive_read_only: rt()
                .block_on(async { Kubelet::connect().await.recursive_read_only().await }),
        };
        // Pods reach the API server at the gateway; it listens on every
        // address of the node (the bridge is created with the first pod).
        let api = ApiServer::start_tls(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            pki.server,
            &node.token(namespace, sa),
        );
        node.api = SocketAddr::new(gateway, api.port);
        Self { node, api }
    }
}

/// Removes what a test created, however it ends.
#[derive(Default)]
struct Cleanup {
    sandboxes: Vec<String>,
    /// (the pod's directory, its cgroup, its log directory)
    pods: Vec<(PathBuf, String, PathBuf)>,
}

impl Cleanup {
    fn pod(&mut self, plan: &PodPlan) {
        self.pods.push((
            plan.dir.clone(),
            plan.cgroup.path.clone(),
            PathBuf::from(&plan.sandbox.log_directory),
        ));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sandboxes = std::mem::take(&mut self.sandboxes);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt().block_on(async {
                let mut k = Kubelet::connect().await;
                for s in &sandboxes {
                    k.remove_sandbox(s).await;
                }
            });
        }));
        for (dir, cgroup, logs) in &self.pods {
            node::clean(dir, cgroup);
            // The kubelet deletes a pod's logs with the pod; a failed test
            // keeps them to be read.
            if std::thread::panicking() {
                eprintln!("the pod's logs are kept in {}", logs.display());
            } else {
                let _ = std::fs::remove_dir_all(logs);
            }
        }
    }
}

/// The agent's pod: the DaemonSet's template as the DaemonSet controller
/// makes it into a Pod, translated. `edit` changes the template first.
fn agent_pod(cluster: &Cluster, edit: impl FnOnce(&mut Value)) -> PodPlan {
    let objects = deploy::kustomization();
    let ds = deploy::only(&objects, "DaemonSet");
    let namespace = check_daemonset(ds, &objects);
    let mut template = ds["spec"]["template"].clone();
    edit(&mut template);
    let pod = podspec::pod_from_template(
        &template,
        &namespace,
        &format!("{}-", ds["metadata"]["name"].as_str().unwrap()),
        ds,
    );
    podspec::translate(&pod, &cluster.node, "deploy/daemonset.yaml").unwrap_or_else(|fields| {
        panic!(
            "deploy/daemonset.yaml: fields of the pod template that the kubelet translation \
             (oom-tracer/tests/common/podspec.rs) does not handle:\n  {}",
            fields.join("\n  ")
        )
    })
}

/// The DaemonSet's own fields, and what it needs from the other objects
/// of the kustomization; returns its namespace.
fn check_daemonset(ds: &Value, objects: &[Value]) -> String {
    let ledger = podspec::Ledger::default();
    {
        let top = podspec::Fields::new(ds, "", &ledger);
        top.skip("apiVersion", "apps/v1");
        top.skip("kind", "DaemonSet");
        let md = top.obj("metadata").unwrap();
        md.skip("name", "the pods' name prefix (pod_from_template)");
        md.skip("labels", "the DaemonSet's own labels");
        md.skip("namespace", "read below");
        let spec = top.obj("spec").unwrap();
        spec.skip(
            "updateStrategy",
            "the DaemonSet controller's rollout; one pod on one node here",
        );
        spec.skip("template", "translated as the pod");
        // The API server rejects a selector that does not match the
        // template's labels.
        let selector = spec.obj("selector").unwrap();
        let labels = &ds["spec"]["template"]["metadata"]["labels"];
        for (k, v) in selector.string_map("matchLabels") {
            assert_eq!(
                labels[&k], v,
                "selector {k}={v} does not match the template"
            );
        }
    }
    let unhandled = ledger.unhandled();
    assert!(
        unhandled.is_empty(),
        "deploy/daemonset.yaml: DaemonSet fields this test does not handle: {unhandled:?}"
    );
    let namespace = ds["metadata"]["namespace"].as_str().unwrap().to_owned();
    deploy::find(objects, "Namespace", &namespace);
    let sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let account = deploy::find(objects, "ServiceAccount", sa);
    assert_eq!(account["metadata"]["namespace"], namespace.as_str());
    // The agent lists and watches pods: its role must allow that.
    let binding = objects
        .iter()
        .find(|o| {
            o["kind"] == "ClusterRoleBinding"
                && o["subjects"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == sa))
        })
        .expect("a ClusterRoleBinding for the agent's service account");
    let role = deploy::find(
        objects,
        "ClusterRole",
        binding["roleRef"]["name"].as_str().unwrap(),
    );
    let allows = |verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["resources"].as_array().unwrap().contains(&json!("pods"))
                && r["verbs"].as_array().unwrap().contains(&json!(verb))
        })
    };
    assert!(allows("list") && allows("watch"), "{role}");
    namespace
}

/// The example pod, translated.
fn example_pod(cluster: &Cluster) -> PodPlan {
    let objects = deploy::load(&deploy::workspace().join("deploy/oom-example-pod.yaml"));
    assert_eq!(objects.len(), 1);
    podspec::translate(&objects[0], &cluster.node, "deploy/oom-example-pod.yaml").unwrap_or_else(
        |fields| {
            panic!(
                "deploy/oom-example-pod.yaml: fields the kubelet translation does not \
                 handle:\n  {}",
                fields.join("\n  ")
            )
        },
    )
}

/// The kubelet's checks before CreateContainer: the image is there (no
/// pull: IfNotPresent/Never, and there is no registry), and runAsNonRoot
/// holds for the uid the container will run as.
async fn admit(k: &mut Kubelet, plan: &PodPlan, i: usize) {
    let c = &plan.containers[i];
    let image = k.image(&c.image).await.unwrap_or_else(|| {
        panic!(
            "image {} is not in the runtime and imagePullPolicy is {}: import \
             target/images/*.tar (cargo xtask images)",
            c.image, c.pull_policy
        )
    });
    if c.run_as_non_root {
        let uid = c
            .run_as_user
            .or(image.uid.map(|u| u.value))
            .expect("runAsNonRoot with a non-numeric image user");
        assert_ne!(
            uid, 0,
            "{}: runAsNonRoot, but the container would run as root",
            c.name
        );
    }
}

/// The Pod as the kubelet's status manager reports it to the API server.
fn pod_status(
    plan: &PodPlan,
    ip: &str,
    container: &str,
    id: &str,
    restarts: u32,
    running: bool,
) -> Value {
    let mut pod = plan.object.clone();
    let state = if running {
        json!({"running": {"startedAt": "2026-11-27T00:00:00Z"}})
    } else {
        json!({"waiting": {"reason": "CrashLoopBackOff"}})
    };
    let last = if restarts > 0 {
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    } else {
        json!({})
    };
    pod["status"] = json!({
        "phase": "Running", "podIP": ip,
        "containerStatuses": [{
            "name": container, "image": plan.containers[0].image, "imageID": "",
            "ready": running, "restartCount": restarts,
            "containerID": format!("containerd://{id}"),
            "state": state, "lastState": last,
        }],
    });
    pod
}

/// The agent's pod, started: (sandbox id, pod IP, container id, the
/// instant before its CreateContainer).
async fn start_agent(
    k: &mut Kubelet,
    cluster: &Cluster,
    plan: &PodPlan,
    cleanup: &mut Cleanup,
) -> (String, String, String, Instant) {
    cleanup.pod(plan);
    node::prepare(plan);
    let sandbox = k.run_sandbox(&plan.sandbox).await;
    cleanup.sandboxes.push(sandbox.clone());
    let ip = k.sandbox_ip(&sandbox).await;
    assert!(
        !ip.is_empty(),
        "the agent's pod has no IP: the DaemonSet uses the pod network (hostNetwork: false)"
    );
    admit(k, plan, 0).await;
    let started = Instant::now();
    let id = k
        .create_start(&sandbox, &plan.sandbox, plan.containers[0].attempt(0))
        .await;
    cluster.api.upsert(pod_status(
        plan,
        &ip,
        &plan.containers[0].name,
        &id,
        0,
        true,
    ));
    (sandbox, ip, id, started)
}

/// Every read-only mount of the container is read-only in its mount
/// table. Returns the mounts beneath them that stay writable (the runtime
/// makes only the mount point read-only unless it supports recursive
/// read-only mounts, and then there must be none).
fn check_read_only(plan: &PodPlan, pid: u32, recursive: bool) -> Vec<String> {
    let table = node::mounts(pid);
    let ro = |opts: &str| opts.split(',').any(|o| o == "ro");
    let mut writable = Vec::new();
    for m in plan.containers[0]
        .config
        .mounts
        .iter()
        .filter(|m| m.readonly)
    {
        let top = table
            .iter()
            .rfind(|(p, _)| *p == m.container_path)
            .unwrap_or_else(|| panic!("{} is not mounted: {table:?}", m.container_path));
        assert!(ro(&top.1), "{} is mounted {}", m.container_path, top.1);
        let prefix = format!("{}/", m.container_path);
        writable.extend(
            table
                .iter()
                .filter(|(p, o)| p.starts_with(&prefix) && !ro(o))
                .map(|(p, _)| p.clone()),
        );
    }
    assert!(
        !recursive || writable.is_empty(),
        "the runtime supports recursive read-only mounts, yet these stay writable: {writable:?}"
    );
    writable
}

/// Every line of a CRI log as JSON: (stdout records, stderr diagnostics).
fn json_lines(path: &Path) -> (Vec<Value>, Vec<Value>) {
    let (lines, raw) = node::read_log(path);
    assert!(
        !raw.contains(&0x1b),
        "{}: the agent's log holds escape characters",
        path.display()
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for LogLine {
        stream, content, ..
    } in lines
    {
        let v: Value = serde_json::from_str(&content).unwrap_or_else(|e| {
            panic!(
                "{}: a {stream} line is not JSON ({e}): {content:?}",
                path.display()
            )
        });
        assert!(
            v.is_object(),
            "{}: not a JSON object: {content}",
            path.display()
        );
        match stream.as_str() {
            "stdout" => out.push(v),
            "stderr" => err.push(v),
            other => panic!("{}: stream {other}", path.display()),
        }
    }
    (out, err)
}

fn for_pod<'a>(records: &'a [Value], event: &str, uid: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["event"] == event && r["pod"]["uid"] == uid)
        .collect()
}

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

/// The agent's process (a host pid: hostPID), its resident memory (KiB)
/// and its memcg's usage (bytes), from the container's memory cgroup.
fn agent_memory(plan: &PodPlan, id: &str) -> (u32, u64, u64) {
    let memcg = node::memcg_dir(plan, id);
    let pid: u32 = std::fs::read_to_string(memcg.join("cgroup.procs"))
        .unwrap()
        .lines()
        .next()
        .expect("the agent's process")
        .parse()
        .unwrap();
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap();
    let usage = node::read_u64(&memcg.join("memory.usage_in_bytes"))
        .or_else(|| node::read_u64(&memcg.join("memory.current")))
        .unwrap();
    (pid, rss_kib, usage)
}

/// The example pod through `KILLS` OOM kills, restarted with the kubelet's
/// back-off, its status published to the API server as the kubelet's
/// status manager does; the agent must keep running meanwhile. Returns the
/// container id of each attempt.
async fn crash_loop(
    k: &mut Kubelet,
    cluster: &Cluster,
    example: &PodPlan,
    agent_id: &str,
    cleanup: &mut Cleanup,
) -> Vec<String> {
    let sandbox = k.run_sandbox(&example.sandbox).await;
    cleanup.sandboxes.push(sandbox.clone());
    let ip = k.sandbox_ip(&sandbox).await;
    admit(k, example, 0).await;
    let c = &example.containers[0];
    let mut attempts = Vec::new();
    let mut backoff = BACKOFF_INITIAL;
    for attempt in 0..KILLS {
        let id = k
            .create_start(&sandbox, &example.sandbox, c.attempt(attempt))
            .await;
        let status = |restarts, running| pod_status(example, &ip, &c.name, &id, restarts, running);
        cluster.api.upsert(status(attempt, true));
        let deadline = Instant::now() + Duration::from_secs(60);
        let st = loop {
            let st = k.status(&id).await;
            if st.state == EXITED {
                break st;
            }
            // The agent keeps running (what the kubelet's PLEG would see).
            let a = k.status(agent_id).await;
            assert_eq!(a.state, RUNNING, "the agent stopped: exit {}", a.exit_code);
            assert!(Instant::now() < deadline, "stress did not exit in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));
        cluster.api.upsert(status(attempt + 1, false));
        attempts.push(id.clone());
        if attempt + 1 < KILLS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        k.remove_container(&id).await;
    }
    k.remove_sandbox(&sandbox).await;
    attempts
}

/// The agent's records about the example pod: each kill and each exit,
/// with the pod's identity, the restart count, the limit and the verdict.
fn check_records(records: &[Value], example: &PodPlan, attempts: &[String]) {
    assert_eq!(records.first().map(|r| &r["event"]), Some(&json!("start")));
    assert_eq!(records.last().map(|r| &r["event"]), Some(&json!("stop")));
    let kills = for_pod(records, "oom_kill", &example.uid);
    assert_eq!(kills.len(), KILLS as usize, "{kills:#?}");
    for (i, kill) in kills.iter().enumerate() {
        assert_eq!(kill["pod"]["namespace"], "default", "{kill}");
        assert_eq!(kill["pod"]["name"], "oom-example", "{kill}");
        assert_eq!(kill["container"]["name"], "stress", "{kill}");
        assert_eq!(kill["container"]["id"], attempts[i].as_str(), "{kill}");
        assert_eq!(kill["container"]["restart_count"], i, "{kill}");
        assert_eq!(kill["memcg"]["limit_bytes"], 52428800, "{kill}");
    }
    let exits = for_pod(records, "container_exit", &example.uid);
    assert_eq!(exits.len(), KILLS as usize, "{exits:#?}");
    for (i, exit) in exits.iter().enumerate() {
        assert_eq!(exit["container"]["restart_count"], i, "{exit}");
        assert_eq!(exit["exit_code"], 137, "{exit}");
        assert_eq!(exit["reason"], "OOMKilled", "{exit}");
        assert_eq!(exit["verdict"], "memcg_oom", "{exit}");
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
