//! The kubelet's part in the DaemonSet test, over the CRI: the checks
//! before CreateContainer, the pod status it reports to the API server,
//! starting the agent's pod, and the example pod's crash loop.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    cluster::{Cleanup, Cluster},
    common::{kubelet::Kubelet, node, podspec::PodPlan},
};

/// CRI ContainerState.
pub(crate) const RUNNING: i32 = 1;
pub(crate) const EXITED: i32 = 2;
/// The kubelet's crash-loop back-off: 10 s, doubling.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// OOM kills of the example pod.
pub(crate) const KILLS: u32 = 3;

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
pub(crate) async fn start_agent(
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

/// The example pod through `KILLS` OOM kills, restarted with the kubelet's
/// back-off, its status published to the API server as the kubelet's
/// status manager does; the agent must keep running meanwhile. Returns the
/// container id of each attempt.
pub(crate) async fn crash_loop(
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
