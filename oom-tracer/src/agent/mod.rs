//! `oom-tracer agent`: the DaemonSet mode. It traces every memcg OOM kill
//! on the node and the lifecycle of every Kubernetes container, with no
//! fixed watch list. The records come from the one pipeline
//! (`crate::pipeline`); the agent's own part is where containers come from
//! ([`NodePods`]: the kubepods cgroup tree, named by the CRI and the
//! Kubernetes API) and the rescans of the node between pumps.
use std::{sync::Arc, time::Duration};

use tokio::time::MissedTickBehavior;

use crate::{
    analyse::Analysis,
    bpf::{loader::LoadError, startup},
    cgroup::{CgroupError, MemoryHierarchy, index::CgroupIndex},
    cli::{AgentArgs, KubeApi},
    errors,
    health::{self, Health},
    host::{
        self,
        clock::BootClock,
        signals::{SignalError, Signals},
    },
    pipeline::{Pipeline, PipelineError, Until, statcheck::ProbeSite, translate::Translator},
    pods::{cri, kube::KubeSource, node::NodePods},
    schema::{Mode, StopReason},
    sinks::{
        Sinks,
        events::KubeEvents,
        metrics::{Metrics, MetricsSink},
        stdout::{Format, Stdout},
    },
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Listen(#[from] health::ListenError),
    #[error(transparent)]
    Signal(#[from] SignalError),
}

pub(crate) async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let mut signals = Signals::install()?;
    let health = Arc::new(Health::default());
    health.tick();
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.listen {
        let local = health::serve_with_metrics(addr, health.clone(), Some(metrics.clone())).await?;
        tracing::info!("http://{local}/metrics, /healthz and /readyz");
    }
    let hierarchy = MemoryHierarchy::detect()?;
    let tracer = startup::load(&args.trace.load_options(hierarchy.hierarchy_id, true))?;
    let kube = kube_source(&args).await;
    let mut sinks = Sinks::new()
        .with(Stdout::new(args.output.format_or(Format::Json)))
        .with(MetricsSink::new(metrics));
    match (&kube, args.post_events) {
        (Some(k), true) => {
            sinks = sinks.with(KubeEvents::spawn(k.client(), args.node_name.clone()))
        }
        (None, true) => tracing::warn!(
            "--post-events needs the Kubernetes API source, which is off: no Events will be posted"
        ),
        _ => {}
    }
    let pods = NodePods::new(hierarchy.clone(), cri_source(&args), kube);
    let (has_cri, has_kube) = (pods.has_cri(), pods.has_kube());
    let mut index = CgroupIndex::new(Some(hierarchy.clone()));
    index.scan();
    let translator = Translator::new(BootClock::measure(), index);
    let analysis = Analysis::new(args.backoff.policy(), args.pressure.options());
    let mut p =
        Pipeline::new(tracer, translator, pods, sinks, analysis).with_health(health.clone());
    // The check's child goes into a probe cgroup `/oom-tracer/probe-<pid>`
    // where the tree is writable, else into the agent's own cgroup; the
    // agent never moves, and traces while the check runs.
    let site = ProbeSite {
        parent: "/oom-tracer".into(),
        remove_parent: true,
    };
    p.check_breakdown(site, args.trace.test_corrupt_stat_layout);
    p.start(Mode::Agent, Some(hierarchy.version)).await?;
    let result = serve(&mut p, &args, &health, &mut signals, (has_cri, has_kube)).await;
    let reason = match &result {
        Ok(signal) => StopReason::Signal((*signal).into()),
        Err(e) => StopReason::Error(errors::chain(e)),
    };
    p.stop(reason, 0).await?;
    result.map(|_| ())
}

/// How long the agent's startup waits for the pod sources' first answer.
const STARTUP_NAMES: Duration = Duration::from_secs(3);

/// Finds the containers already running, then traces until a stop
/// signal, rescanning the node on every tick of `--rescan-interval`.
async fn serve(
    p: &mut Pipeline<crate::bpf::tracer::Tracer, NodePods>,
    args: &AgentArgs,
    health: &Health,
    signals: &mut Signals,
    (has_cri, has_kube): (bool, bool),
) -> Result<&'static str, AgentError> {
    p.rescan()?;
    if !p.has_pod_roots() {
        tracing::warn!(
            "no kubepods cgroup on this node yet: OOM kills are still traced everywhere; containers are picked up when the kubelet creates kubepods"
        );
    }
    // The containers running already are named if the runtime answers
    // within STARTUP_NAMES; records are drained meanwhile.
    p.await_pods(STARTUP_NAMES).await?;
    let running = p.discover()?;
    // Startup parsed BTF and listed the runtime: give that memory back.
    host::settle();
    health.set_ready();
    let on = |b: bool| if b { "on" } else { "off" };
    tracing::info!(
        "agent ready: {running} containers running, CRI {}, Kubernetes API {}",
        on(has_cri),
        on(has_kube)
    );
    let mut rescan = tokio::time::interval(args.rescan_interval.max(Duration::from_millis(100)));
    rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rescan.tick().await;
    loop {
        match p.trace_until(signals, rescan.tick()).await? {
            Until::Signal(s) => return Ok(s),
            Until::Done(_) => p.rescan()?,
        }
    }
}

/// The CRI source, unless switched off or no socket is found.
fn cri_source(args: &AgentArgs) -> Option<cri::Cri> {
    if args.no_cri {
        return None;
    }
    match cri::pick_socket(args.cri_socket.as_deref()) {
        Ok(s) => Some(cri::Cri::new(s)),
        Err(e) => {
            tracing::warn!("{e}: pod names come from the Kubernetes API only");
            None
        }
    }
}

/// The Kubernetes API source, unless switched off or not configured.
async fn kube_source(args: &AgentArgs) -> Option<KubeSource> {
    if args.kube_api == KubeApi::Off {
        return None;
    }
    match KubeSource::start(args.node_name.as_deref(), args.kubeconfig.as_deref()).await {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::info!("Kubernetes API source off: {}", errors::chain(&e));
            None
        }
    }
}
