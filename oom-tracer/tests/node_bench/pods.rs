//! The pods the kubelet stand-in runs on the node, and the API server's
//! view of them: idle pods started a few at a time, crash loops of pods
//! OOM-killed at every start, and a churn of short-lived pods.
//!
//! The runtime may fail under this load (containerd 1.6 on 2 vCPUs:
//! `failed to create shim task: context canceled`, a container that never
//! leaves CREATED). Such a failure is the runtime's, not the agent's: it
//! is noted in [`Failures`] (and the report), and the pod or container is
//! tried again after a back-off, as the kubelet does; an attempt that never
//! ran expects no record from the agent.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    CHURN_LIFE, Load, NODE,
    cleanup::Made,
    common::{
        apiserver::{ApiServer, realistic_pod_json},
        kubelet::{ContainerSpec, Kubelet, Pod},
    },
};

/// Pods started at once while the node fills up.
const START_PARALLEL: usize = 4;
/// Tries of a pod's sandbox and container before the bench gives it up.
const POD_TRIES: u32 = 4;
/// The longest a container may take to exit; HOG's take well under a second.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

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

/// One attempt of a crash loop that ran: (pod uid, pod name, namespace,
/// attempt, container id, exit code, reason).
pub(crate) type Attempt = (String, String, String, u32, String, i32, String);

/// What the kubelet stand-in did, for the checks.
#[derive(Default)]
pub(crate) struct Done {
    pub(crate) crash_attempts: Vec<Attempt>,
    /// (pod uid, pod name, container id)
    pub(crate) churn: Vec<(String, String, String)>,
    pub(crate) pods: Vec<Pod>,
}

/// The runtime's failures, as it reported them.
#[derive(Clone, Default)]
pub(crate) struct Failures(Arc<Mutex<Vec<String>>>);

impl Failures {
    pub(crate) fn note(&self, what: String) {
        eprintln!("node bench: runtime failure: {what}");
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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

/// Waits `d`, or less if `stop` is set.
async fn pause(d: Duration, stop: Option<&AtomicBool>) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pod sandbox, tried `tries` times with a back-off (1 s, doubling).
pub(crate) async fn run_pod(
    k: &mut Kubelet,
    made: &Made,
    failures: &Failures,
    ns: &str,
    name: &str,
    tries: u32,
) -> Option<Pod> {
    let mut backoff = Duration::from_secs(1);
    for t in 1..=tries {
        match k.try_run_pod(ns, name, &made.new_uid()).await {
            Ok(pod) => return Some(pod),
            Err(e) => failures.note(format!(
                "RunPodSandbox {name} (try {t}/{tries}): {}",
                e.message()
            )),
        }
        pause(backoff, None).await;
        backoff *= 2;
    }
    None
}

/// A pod with one `spec` container that keeps running: the sandbox and
/// the container tried `POD_TRIES` times each. `None` if the sandbox never
/// came; the container id is `None` if it never started.
async fn idle_pod(
    api: &ApiServer,
    made: &Made,
    failures: &Failures,
    ns: &str,
    name: &str,
    spec: &ContainerSpec<'_>,
) -> Option<(Pod, Option<String>)> {
    let mut k = Kubelet::connect().await;
    let pod = run_pod(&mut k, made, failures, ns, name, POD_TRIES).await?;
    api.upsert(api_pod(&pod, spec.name, None, 0));
    let mut backoff = Duration::from_secs(1);
    for t in 1..=POD_TRIES {
        match k.try_start(&pod, spec, 0).await {
            Ok(id) => {
                api.upsert(api_pod(&pod, spec.name, Some(&id), 0));
                return Some((pod, Some(id)));
            }
            Err(e) => {
                failures.note(format!("{name} (try {t}/{POD_TRIES}): {e}"));
                if let Some(id) = &e.container {
                    k.remove_container(id).await;
                }
            }
        }
        pause(backoff, None).await;
        backoff *= 2;
    }
    Some((pod, None))
}

/// Starts pods `names` with `spec`, `START_PARALLEL` at a time; returns
/// those whose sandbox came, with their container ids.
pub(crate) async fn start_pods(
    api: &Arc<ApiServer>,
    made: &Made,
    failures: &Failures,
    ns: &str,
    names: Vec<String>,
    spec: &'static ContainerSpec<'static>,
) -> Vec<(Pod, Option<String>)> {
    let mut out = Vec::new();
    for chunk in names.chunks(START_PARALLEL) {
        let mut tasks = Vec::new();
        for name in chunk {
            let (api, made, failures) = (api.clone(), made.clone(), failures.clone());
            let (ns, name) = (ns.to_owned(), name.clone());
            tasks.push(tokio::spawn(async move {
                idle_pod(&api, &made, &failures, &ns, &name, spec).await
            }));
        }
        for t in tasks {
            if let Ok(Some(p)) = t.await {
                out.push(p);
            }
        }
    }
    out
}

/// The kubelet's loop for a container that is OOM-killed at every start:
/// start, wait for the exit, back off (1 s doubling to 8 s), restart. A
/// start the runtime fails is backed off and tried again with the same
/// attempt; a container that never ran to an exit is noted and replaced.
pub(crate) async fn crash_loop(
    api: Arc<ApiServer>,
    pod: Pod,
    stop: Arc<AtomicBool>,
    failures: Failures,
) -> Vec<Attempt> {
    let mut k = Kubelet::connect().await;
    let mut out = Vec::new();
    let mut backoff = Duration::from_secs(1);
    let mut attempt = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let id = match k.try_start(&pod, &HOG, attempt).await {
            Ok(id) => Some(id),
            Err(e) => {
                failures.note(format!("{} attempt {attempt}: {e}", pod.name));
                if let Some(id) = &e.container {
                    k.remove_container(id).await;
                }
                None
            }
        };
        if let Some(id) = &id {
            api.upsert(api_pod(&pod, HOG.name, Some(id), attempt as i32));
            match k.try_wait_exit(id, EXIT_TIMEOUT).await {
                Ok((code, reason)) => out.push((
                    pod.uid.clone(),
                    pod.name.clone(),
                    pod.namespace.clone(),
                    attempt,
                    id.clone(),
                    code,
                    reason,
                )),
                Err(e) => failures.note(format!("{} attempt {attempt}: {e}", pod.name)),
            }
        }
        pause(backoff, Some(&stop)).await;
        backoff = (backoff * 2).min(Duration::from_secs(8));
        if let Some(id) = id {
            k.remove_container(&id).await;
            attempt += 1;
        }
    }
    out
}

/// Short-lived pods: one starts every `load.churn_every` and is removed
/// after `CHURN_LIFE`. A pod the runtime fails is noted and not retried
/// (the next one comes soon).
pub(crate) async fn churn(
    api: Arc<ApiServer>,
    made: Made,
    failures: Failures,
    ns: String,
    load: Load,
    stop: Arc<AtomicBool>,
) -> Vec<(String, String, String)> {
    type Live = tokio::task::JoinHandle<Option<(Pod, Option<String>)>>;
    let mut live: Vec<(Instant, Live)> = Vec::new();
    let mut done = Vec::new();
    let mut n = 0;
    let mut tick = tokio::time::interval(load.churn_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let remove = |api: Arc<ApiServer>, h: Live| async move {
        let (pod, id) = h.await.ok().flatten()?;
        let mut k = Kubelet::connect().await;
        if let Some(id) = &id {
            k.remove_container(id).await;
        }
        k.remove_pod(&pod).await;
        api.delete(&pod.uid);
        Some((pod.uid.clone(), pod.name.clone(), id?))
    };
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (api2, made2, failures2, ns2) =
            (api.clone(), made.clone(), failures.clone(), ns.clone());
        let name = format!("churn-{n:04}");
        n += 1;
        live.push((
            Instant::now(),
            tokio::spawn(async move {
                let mut k = Kubelet::connect().await;
                let pod = run_pod(&mut k, &made2, &failures2, &ns2, &name, 1).await?;
                match k.try_start(&pod, &IDLE, 0).await {
                    Ok(id) => {
                        api2.upsert(api_pod(&pod, IDLE.name, Some(&id), 0));
                        Some((pod, Some(id)))
                    }
                    Err(e) => {
                        failures2.note(format!("{name}: {e}"));
                        if let Some(id) = &e.container {
                            k.remove_container(id).await;
                        }
                        Some((pod, None))
                    }
                }
            }),
        ));
        let (old, keep): (Vec<_>, Vec<_>) = live
            .into_iter()
            .partition(|(at, _)| at.elapsed() >= CHURN_LIFE);
        live = keep;
        for (_, h) in old {
            done.push(tokio::spawn(remove(api.clone(), h)));
        }
    }
    let mut out = Vec::new();
    for (_, h) in live {
        out.extend(remove(api.clone(), h).await);
    }
    for h in done {
        out.extend(h.await.ok().flatten());
    }
    out
}
