//! The pods the kubelet stand-in runs on the node, and the API server's
//! view of them: idle pods started a few at a time, crash loops of pods
//! OOM-killed at every start, and a churn of short-lived pods.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    CHURN_EVERY, CHURN_LIFE, NODE,
    common::{
        apiserver::{ApiServer, realistic_pod_json},
        kubelet::{ContainerSpec, Kubelet, Pod},
    },
};

/// Pods started at once while the node fills up.
const START_PARALLEL: usize = 6;

/// Hits its 50Mi limit in about 200 ms.
pub(crate) const HOG: ContainerSpec<'static> = ContainerSpec {
    name: "hog",
    args: &["--step", "5Mi", "--interval", "20ms"],
    memory_limit: Some(50 << 20),
};
/// Holds 4Mi until removed.
pub(crate) const IDLE: ContainerSpec<'static> = ContainerSpec {
    name: "app",
    args: &[
        "--step",
        "1Mi",
        "--interval",
        "10ms",
        "--max",
        "4Mi",
        "--hold",
        "3600s",
    ],
    memory_limit: Some(64 << 20),
};

/// What the kubelet stand-in did, for the checks.
#[derive(Default)]
pub(crate) struct Done {
    /// (pod uid, pod name, namespace, attempt, container id, exit code, reason)
    pub(crate) crash_attempts: Vec<(String, String, String, u32, String, i32, String)>,
    /// (pod uid, pod name, container id)
    pub(crate) churn: Vec<(String, String, String)>,
    pub(crate) pods: Vec<Pod>,
}

/// The Pod as the API server lists it, its container `container` with id
/// `id` and `restarts`.
pub(crate) fn api_pod(pod: &Pod, container: &str, id: Option<&str>, restarts: i32) -> Value {
    realistic_pod_json(
        &pod.namespace,
        &pod.name,
        &pod.uid,
        NODE,
        container,
        id,
        restarts,
    )
}

/// Starts `n` pods with `spec`, `START_PARALLEL` at a time; returns them
/// with their container ids.
pub(crate) async fn start_pods(
    api: &Arc<ApiServer>,
    ns: &str,
    names: Vec<String>,
    spec: &'static ContainerSpec<'static>,
) -> Vec<(Pod, String)> {
    let mut out = Vec::new();
    for chunk in names.chunks(START_PARALLEL) {
        let mut tasks = Vec::new();
        for name in chunk {
            let (api, ns, name) = (api.clone(), ns.to_owned(), name.clone());
            tasks.push(tokio::spawn(async move {
                let mut k = Kubelet::connect().await;
                let pod = k.run_pod(&ns, &name).await;
                api.upsert(api_pod(&pod, spec.name, None, 0));
                let id = k.start(&pod, spec, 0).await;
                api.upsert(api_pod(&pod, spec.name, Some(&id), 0));
                (pod, id)
            }));
        }
        for t in tasks {
            out.push(t.await.expect("starting a pod"));
        }
    }
    out
}

/// The kubelet's loop for a container that is OOM-killed at every start:
/// start, wait for the exit, back off (1 s doubling to 8 s), restart.
pub(crate) async fn crash_loop(
    api: Arc<ApiServer>,
    pod: Pod,
    stop: Arc<AtomicBool>,
) -> Vec<(String, String, String, u32, String, i32, String)> {
    let mut k = Kubelet::connect().await;
    let mut out = Vec::new();
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let id = k.start(&pod, &HOG, attempt).await;
        api.upsert(api_pod(&pod, HOG.name, Some(&id), attempt as i32));
        let (code, reason) = k.wait_exit(&id, Duration::from_secs(60)).await;
        out.push((
            pod.uid.clone(),
            pod.name.clone(),
            pod.namespace.clone(),
            attempt,
            id.clone(),
            code,
            reason,
        ));
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        backoff = (backoff * 2).min(Duration::from_secs(8));
        k.remove_container(&id).await;
        attempt += 1;
    }
    out
}

/// Short-lived pods: one starts every `CHURN_EVERY` and is removed after
/// `CHURN_LIFE`, so several start and stop each second.
pub(crate) async fn churn(
    api: Arc<ApiServer>,
    ns: String,
    stop: Arc<AtomicBool>,
) -> Vec<(String, String, String)> {
    let mut live: Vec<(Instant, tokio::task::JoinHandle<(Pod, String)>)> = Vec::new();
    let mut done = Vec::new();
    let mut n = 0;
    let mut tick = tokio::time::interval(CHURN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let remove = |api: Arc<ApiServer>, h: tokio::task::JoinHandle<(Pod, String)>| async move {
        let (pod, id) = h.await.expect("a churn pod");
        let mut k = Kubelet::connect().await;
        k.remove_container(&id).await;
        k.remove_pod(&pod).await;
        api.delete(&pod.uid);
        (pod.uid.clone(), pod.name.clone(), id)
    };
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (api2, ns2) = (api.clone(), ns.clone());
        let name = format!("churn-{n:04}");
        n += 1;
        live.push((
            Instant::now(),
            tokio::spawn(async move {
                let mut k = Kubelet::connect().await;
                let pod = k.run_pod(&ns2, &name).await;
                let id = k.start(&pod, &IDLE, 0).await;
                api2.upsert(api_pod(&pod, IDLE.name, Some(&id), 0));
                (pod, id)
            }),
        ));
        let (old, keep): (Vec<_>, Vec<_>) = live
            .into_iter()
            .partition(|(at, _)| at.elapsed() >= CHURN_LIFE);
        live = keep;
        for (_, h) in old {
            let api = api.clone();
            done.push(tokio::spawn(remove(api, h)));
        }
    }
    let mut out = Vec::new();
    for (_, h) in live {
        out.push(remove(api.clone(), h).await);
    }
    for h in done {
        out.push(h.await.expect("removing a churn pod"));
    }
    out
}
