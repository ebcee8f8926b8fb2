//! The agent's Kubernetes API source, against a stand-in API server (no
//! kube-apiserver can run on the test machine): real Pod JSON over
//! list/watch with resourceVersions and the node's field selector. The
//! containers themselves are real (containerd CRI), but the agent's CRI
//! source is off, so every name in the records comes from the API.
mod common;

use common::{
    agent::Agent,
    apiserver::{ApiServer, kubeconfig_for, pod_json},
    kubelet::{ContainerSpec, HOG, require_runtime, run_to_exit},
};

#[test]
fn api_metadata_for_a_kill() {
    require_runtime();
    let api = ApiServer::start();
    // A pod on another node must never be listed by this node's agent.
    api.upsert(pod_json(
        "other",
        "elsewhere",
        "00000000-0000-4000-8000-000000000001",
        "node-b",
        "c",
        "ffff",
        0,
    ));
    let kubeconfig = api.kubeconfig(&std::env::temp_dir());
    let agent = Agent::start_with(&[
        "--no-cri",
        "--kube-api",
        "auto",
        "--node-name",
        "node-a",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--post-events",
    ]);
    let spec = ContainerSpec {
        name: "hog",
        args: &["--step", "2Mi", "--interval", "50ms"],
        memory_limit: Some(50 << 20),
    };
    let (pod, _, code, _) = run_to_exit("team-api", "api-pod", &spec, |pod, id| {
        // What the kubelet would write to the API once the container runs.
        api.upsert(pod_json(
            "team-api", "api-pod", &pod.uid, "node-a", "hog", id, 0,
        ));
    });
    assert_eq!(code, 137);
    let stderr = agent.stderr_text();
    let recs = agent.stop();
    let kill = recs
        .iter()
        .find(|r| r["event"] == "oom_kill" && r["pod"]["uid"] == pod.uid.as_str())
        .unwrap_or_else(|| panic!("no kill for the pod: {recs:#?}"));
    assert_eq!(kill["pod"]["name"], "api-pod");
    assert_eq!(kill["pod"]["namespace"], "team-api");
    assert_eq!(kill["container"]["name"], "hog");
    assert_eq!(kill["container"]["restart_count"], 0);
    // An Event on the pod says what happened, in words a person reads in
    // `kubectl describe pod`.
    let posted = api.events_posted();
    assert_eq!(
        posted.len(),
        1,
        "{posted:#?}\n{stderr}\n{:#?}",
        api.requests()
    );
    let ev = &posted[0];
    assert_eq!(ev["involvedObject"]["uid"], pod.uid.as_str());
    assert_eq!(ev["involvedObject"]["name"], "api-pod");
    assert_eq!(ev["involvedObject"]["fieldPath"], "spec.containers{hog}");
    assert_eq!(ev["reason"], "OOMKilled");
    assert_eq!(ev["type"], "Warning");
    let msg = ev["message"].as_str().unwrap();
    assert!(
        msg.contains("victim stress")
            && msg.contains("container limit hit")
            && msg.contains("50Mi"),
        "{msg}"
    );
    // The reflector listed and watched only this node's pods.
    let reqs = api.requests();
    assert!(reqs.iter().any(|r| r.contains("watch=true")), "{reqs:#?}");
    assert!(
        reqs.iter()
            .filter(|r| r.contains("/api/v1/pods"))
            .all(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")
                || r.contains("fieldSelector=spec.nodeName=node-a")),
        "{reqs:#?}"
    );
}

/// An unreachable API server degrades the agent (logged), never stops it:
/// kills are still reported, with the pod uid from the cgroup path.
#[test]
fn unreachable_api_server_degrades() {
    require_runtime();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir();
    let kubeconfig = kubeconfig_for(port, &dir);
    let agent = Agent::start_with(&["--no-cri", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    let (pod, ..) = run_to_exit("team-x", "no-api", &HOG, |_, _| {});
    let stderr = agent.stderr_text();
    let recs = agent.stop();
    assert!(
        stderr.contains("Kubernetes API source degraded"),
        "{stderr}"
    );
    let kill = recs
        .iter()
        .find(|r| r["event"] == "oom_kill" && r["pod"]["uid"] == pod.uid.as_str())
        .expect("the kill is reported without metadata sources");
    assert!(kill["pod"]["name"].is_null());
    assert!(kill["victim_cgroup"].as_str().unwrap().contains(&pod.uid));
}
