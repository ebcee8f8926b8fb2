//! The node agent against a real container runtime: containerd's CRI runs
//! real pods (the kubelet's part is played by `common::kubelet`), the
//! kernel OOM-kills real containers, and the running agent must name the
//! right namespace, pod, container and restart count.
mod common;

use std::time::Duration;

use common::{
    agent::Agent,
    kubelet::{ContainerSpec, HOG, Kubelet, require_runtime},
};
use serde_json::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn for_pod<'a>(recs: &'a [Value], event: &str, uid: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| r["event"] == event && r["pod"]["uid"] == uid)
        .collect()
}

/// Three OOM kills and two restarts of one container: every kill, exit and
/// restart names the pod, the container and its restart count.
#[test]
fn agent_reports_every_kill_and_restart() {
    require_runtime();
    let agent = Agent::start(&[]);
    let rt = rt();
    let (pod, attempts) = rt.block_on(async {
        let mut k = Kubelet::connect().await;
        let pod = k.run_pod("team-a", "oom-loop").await;
        let attempts = k
            .crash_loop(&pod, &HOG, 3, Duration::from_millis(300))
            .await;
        k.remove_pod(&pod).await;
        (pod, attempts)
    });
    let recs = agent.stop();
    for (id, code, reason) in &attempts {
        assert_eq!(
            (*code, reason.as_str()),
            (137, "OOMKilled"),
            "the runtime's own verdict for {id}"
        );
    }
    let kills = for_pod(&recs, "oom_kill", &pod.uid);
    assert_eq!(kills.len(), 3, "{recs:#?}");
    for (i, k) in kills.iter().enumerate() {
        assert_eq!(k["pod"]["name"], "oom-loop");
        assert_eq!(k["pod"]["namespace"], "team-a");
        assert_eq!(k["container"]["name"], "hog");
        assert_eq!(k["container"]["id"], attempts[i].0.as_str());
        assert_eq!(k["container"]["restart_count"], i as u64);
        assert_eq!(k["memcg"]["limit_bytes"], 52428800);
        assert_eq!(k["memcg"]["level"], "container");
        assert_eq!(k["victim"]["comm"], "stress");
        assert!(
            k["victim_cgroup"]
                .as_str()
                .unwrap()
                .starts_with(&format!("/kubepods/burstable/pod{}/", pod.uid))
        );
    }
    let exits = for_pod(&recs, "container_exit", &pod.uid);
    assert_eq!(exits.len(), 3);
    assert!(
        exits
            .iter()
            .all(|e| e["exit_code"] == 137 && e["reason"] == "OOMKilled"),
        "{exits:#?}"
    );
    let restarts = for_pod(&recs, "restart", &pod.uid);
    let counts: Vec<u64> = restarts
        .iter()
        .map(|r| r["restart_count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2]);
    // The observed delay covers the harness's back-off (300 ms, then 600 ms).
    let delays: Vec<u64> = restarts
        .iter()
        .map(|r| r["backoff_ms"].as_u64().unwrap())
        .collect();
    assert!(delays[0] >= 300 && delays[1] >= 600, "{delays:?}");
    // The pause container is never reported as a container. A start
    // written before the runtime named it (a loaded node: the names are
    // waited for 50 ms) has the id alone.
    let ids: Vec<&str> = attempts.iter().map(|a| a.0.as_str()).collect();
    let starts = for_pod(&recs, "container_start", &pod.uid);
    assert_eq!(starts.len(), 3, "{recs:#?}");
    for s in starts {
        assert!(
            ids.contains(&s["container"]["id"].as_str().unwrap()),
            "{s:#}"
        );
        let name = &s["container"]["name"];
        assert!(name.is_null() || name == "hog", "{s:#}");
    }
}

/// A pod with two containers, one OOM-killed: the records name the right one.
#[test]
fn two_containers_only_one_killed() {
    require_runtime();
    let agent = Agent::start(&[]);
    let rt = rt();
    let (pod, hog_id, idle_id) = rt.block_on(async {
        let mut k = Kubelet::connect().await;
        let pod = k.run_pod("team-b", "two-containers").await;
        let idle = ContainerSpec {
            name: "idle",
            args: &[
                "--step",
                "1Mi",
                "--interval",
                "10ms",
                "--max",
                "4Mi",
                "--hold",
                "30s",
            ],
            memory_limit: Some(100 << 20),
        };
        let idle_id = k.start(&pod, &idle, 0).await;
        let hog_id = k.start(&pod, &HOG, 0).await;
        let (code, reason) = k.wait_exit(&hog_id, Duration::from_secs(60)).await;
        assert_eq!((code, reason.as_str()), (137, "OOMKilled"));
        k.remove_container(&hog_id).await;
        k.remove_container(&idle_id).await;
        k.remove_pod(&pod).await;
        (pod, hog_id, idle_id)
    });
    let recs = agent.stop();
    let kills = for_pod(&recs, "oom_kill", &pod.uid);
    assert_eq!(kills.len(), 1, "{recs:#?}");
    assert_eq!(kills[0]["container"]["name"], "hog");
    assert_eq!(kills[0]["container"]["id"], hog_id.as_str());
    // Each container started once, by id (a start written before the
    // runtime named it, on a loaded node, has the id alone), and a name
    // when there is one is its own.
    let starts = for_pod(&recs, "container_start", &pod.uid);
    let mut seen: Vec<&str> = starts
        .iter()
        .map(|s| s["container"]["id"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    let mut want = [hog_id.as_str(), idle_id.as_str()];
    want.sort_unstable();
    assert_eq!(seen, want, "{recs:#?}");
    for s in starts {
        let name = &s["container"]["name"];
        let own = if s["container"]["id"] == hog_id.as_str() {
            "hog"
        } else {
            "idle"
        };
        assert!(name.is_null() || name == own, "{s:#}");
    }
}

/// A child process (not the container's main process) is OOM-killed while
/// the container keeps running: an oom_kill for that container, and no
/// container exit or restart.
#[test]
fn child_oom_kill_without_restart() {
    require_runtime();
    let agent = Agent::start(&[]);
    let rt = rt();
    let pod = rt.block_on(async {
        let mut k = Kubelet::connect().await;
        let pod = k.run_pod("team-c", "child-oom").await;
        let spec = ContainerSpec {
            name: "parent",
            args: &["--in-child", "--step", "5Mi", "--interval", "20ms"],
            memory_limit: Some(50 << 20),
        };
        let id = k.start(&pod, &spec, 0).await;
        // Long enough for the child to reach the limit and die.
        tokio::time::sleep(Duration::from_secs(3)).await;
        k.remove_container(&id).await;
        k.remove_pod(&pod).await;
        pod
    });
    let recs = agent.stop();
    let kills = for_pod(&recs, "oom_kill", &pod.uid);
    assert_eq!(kills.len(), 1, "{recs:#?}");
    assert_eq!(kills[0]["container"]["name"], "parent");
    let main_pid = for_pod(&recs, "container_start", &pod.uid)[0]["pid"].clone();
    assert_ne!(
        kills[0]["victim"]["pid"], main_pid,
        "the victim is the child"
    );
    // The container ended only when the test removed it: the runtime's
    // SIGKILL, not the OOM killer, whatever Kubernetes would call it.
    let exits = for_pod(&recs, "container_exit", &pod.uid);
    assert_eq!(exits.len(), 1, "{exits:#?}");
    assert_eq!(exits[0]["verdict"], "sigkill_other", "{exits:#?}");
    assert!(for_pod(&recs, "restart", &pod.uid).is_empty());
}

/// Restarting the agent while pods run: the new agent rediscovers the
/// running container with its metadata and still reports its OOM kill.
#[test]
fn agent_restart_rediscovers_containers() {
    require_runtime();
    let rt = rt();
    let mut k = rt.block_on(Kubelet::connect());
    let pod = rt.block_on(k.run_pod("team-d", "rediscover"));
    // Slow ramp: about 10 s to the 50Mi limit, so that the second agent
    // is tracing before the kill even on a loaded machine.
    let slow = ContainerSpec {
        name: "slow",
        args: &["--step", "1Mi", "--interval", "200ms"],
        memory_limit: Some(50 << 20),
    };
    let first = Agent::start(&[]);
    let id = rt.block_on(k.start(&pod, &slow, 0));
    std::thread::sleep(Duration::from_millis(800));
    let before = first.stop();
    assert_eq!(for_pod(&before, "container_start", &pod.uid).len(), 1);
    let second = Agent::start(&[]);
    let (code, reason) = rt.block_on(k.wait_exit(&id, Duration::from_secs(60)));
    assert_eq!((code, reason.as_str()), (137, "OOMKilled"));
    rt.block_on(async {
        k.remove_container(&id).await;
        k.remove_pod(&pod).await;
    });
    let after = second.stop();
    let found = for_pod(&after, "container_start", &pod.uid);
    assert_eq!(found.len(), 1, "{after:#?}");
    assert_eq!(found[0]["discovered"], true);
    assert_eq!(found[0]["container"]["name"], "slow");
    assert_eq!(found[0]["pod"]["name"], "rediscover");
    assert_eq!(found[0]["memory_limit_bytes"], 52428800);
    let kills = for_pod(&after, "oom_kill", &pod.uid);
    assert_eq!(kills.len(), 1);
    assert_eq!(kills[0]["container"]["name"], "slow");
    let exits = for_pod(&after, "container_exit", &pod.uid);
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0]["reason"], "OOMKilled");
}
