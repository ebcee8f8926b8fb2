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
//! `checks` (what is read back: memory, mounts, the log, the records) and
//! `scenario` (the run itself, which `daemonset_v2.rs` also runs in a
//! cgroup v2 guest).
#[path = "daemonset/checks.rs"]
mod checks;
#[path = "daemonset/cluster.rs"]
mod cluster;
mod common;
#[path = "daemonset/lifecycle.rs"]
mod lifecycle;
#[path = "daemonset/pods.rs"]
mod pods;
#[path = "daemonset/scenario.rs"]
mod scenario;

use std::time::{Duration, Instant};

use checks::json_lines;
use cluster::{Cleanup, Cluster, images_dir, import_images, rt};
use common::{
    deploy,
    kubelet::{Kubelet, require_runtime},
    node,
    podspec::{self, Node},
};
use lifecycle::{EXITED, start_agent};
use pods::agent_pod;
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

/// The DaemonSet's pod and the example pod on the real runtime (this
/// machine: cgroup v1, the host's cgroup namespace): `daemonset/scenario.rs`.
#[test]
fn daemonset_runs_as_deployed() {
    let run = scenario::runs_as_deployed(false);
    eprintln!(
        "the example pod {}: killed in containers {:?}; the agent's log {} bytes; its /proc/self/cgroup: \
         {:?}",
        run.uid,
        run.attempts,
        run.log.len(),
        run.own_cgroup
    );
}

/// The call-sites overlay (`deploy/callsites/`) run the same way: every
/// kill of the example pod carries its call sites, the top one named from
/// the pod's own binary (the stress image keeps its symbols). The example
/// pod runs as uid 65534: reading its mappings and binary takes the
/// overlay's CAP_SYS_PTRACE.
#[test]
fn callsites_overlay_names_the_sites() {
    let run = scenario::runs_with_overlay(false, Some("callsites"));
    let kills: Vec<&Value> = run
        .records
        .iter()
        .filter(|r| r["event"] == "oom_kill" && r["pod"]["uid"] == run.uid.as_str())
        .collect();
    assert_eq!(kills.len(), run.attempts.len(), "{:#?}", run.records);
    for k in kills {
        let top = &k["callsites"]["top"][0]["stack"];
        let inner = top["frames"][0]["symbol"].as_str().unwrap_or_default();
        assert!(
            inner.starts_with("stress::"),
            "the top site is named from the pod's binary: {:#}",
            k["callsites"]
        );
        assert_eq!(
            top["shallow"], false,
            "stress is built with frame pointers: {top:#}"
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
