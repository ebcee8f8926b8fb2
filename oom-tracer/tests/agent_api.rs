//! The agent's Kubernetes API source, against a stand-in API server (no
//! kube-apiserver can run on the test machine): real Pod JSON over
//! list/watch with resourceVersions and the node's field selector. The
//! containers themselves are real (containerd CRI), but the agent's CRI
//! source is off, so every name in the records comes from the API.
mod common;

use std::time::Duration;

use common::{
    agent::Agent,
    apiserver::{ApiServer, pod_json},
    kubelet::{ContainerSpec, Kubelet, require_runtime},
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pod = rt.block_on(async {
        let mut k = Kubelet::connect().await;
        let pod = k.run_pod("team-api", "api-pod").await;
        let spec = ContainerSpec {
            name: "hog",
            args: &["--step", "2Mi", "--interval", "50ms"],
            memory_limit: Some(50 << 20),
        };
        let id = k.start(&pod, &spec, 0).await;
        // What the kubelet would write to the API once the container runs.
        api.upsert(pod_json(
            "team-api", "api-pod", &pod.uid, "node-a", "hog", &id, 0,
        ));
        let (code, _) = k.wait_exit(&id, Duration::from_secs(60)).await;
        assert_eq!(code, 137);
        k.remove_container(&id).await;
        k.remove_pod(&pod).await;
        pod
    });
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
    let kubeconfig = dir.join(format!("kubeconfig-dead-{port}"));
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"),
    )
    .unwrap();
    let agent = Agent::start_with(&["--no-cri", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pod = rt.block_on(async {
        let mut k = Kubelet::connect().await;
        let pod = k.run_pod("team-x", "no-api").await;
        let spec = ContainerSpec {
            name: "hog",
            args: &["--step", "5Mi", "--interval", "20ms"],
            memory_limit: Some(50 << 20),
        };
        let id = k.start(&pod, &spec, 0).await;
        k.wait_exit(&id, Duration::from_secs(60)).await;
        k.remove_container(&id).await;
        k.remove_pod(&pod).await;
        pod
    });
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
