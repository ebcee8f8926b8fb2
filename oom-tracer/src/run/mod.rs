//! `oom-tracer run`: the kubelet's part on one box. It creates a pod-like
//! cgroup pair, runs the workload in the container cgroup under a memory
//! limit, traces it, and restarts it with the kubelet's back-off until
//! `--max-restarts`, the restart policy, Ctrl-C or SIGTERM. Its cgroups
//! are removed on every way out, and the `stop` record says why it ended.
//!
//! The records come from the one pipeline (`crate::pipeline`); `run`'s own
//! part is where containers come from: it registers each container with
//! its [`FixedPod`] before starting the workload.
use std::{
    ffi::OsString, os::unix::process::ExitStatusExt as _, path::PathBuf, sync::Arc, time::Duration,
};

mod output;
mod workload;

use output::WorkloadStdio;
use workload::{ids, kill_all, lossy, spawn, workload};

use crate::{
    analyse::Analysis,
    backoff::Backoff,
    bpf::{loader::LoadError, startup, tracer::Tracer},
    cgroup::{CgroupError, MemoryHierarchy, index::CgroupIndex, pod::PodCgroups},
    cli::{RestartPolicy, RunArgs},
    errors,
    health::{self, Health},
    host::{
        self,
        clock::BootClock,
        signals::{SignalError, Signals},
    },
    pipeline::{Pipeline, PipelineError, Until, statcheck::ProbeSite, translate::Translator},
    pods::{Container, fixed::FixedPod},
    schema::{
        Backoff as BackoffRecord, ContainerRef, ContainerState, ExitReason, Mode, PodRef, Restart,
        StopReason, Timestamp,
    },
    sinks::{
        Sinks,
        metrics::{Metrics, MetricsSink},
        stdout::{Format, Stdout},
    },
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    Listen(#[from] health::ListenError),
    #[error("starting {command:?}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for the workload")]
    Wait(#[source] std::io::Error),
    #[error(
        "no `stress` binary next to {exe}; build it with `cargo xtask build` or give a command after `--`"
    )]
    NoStress { exe: PathBuf },
    #[error("opening {path} for the workload's output (--workload-output)")]
    WorkloadOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type RunPipeline = Pipeline<Tracer, FixedPod>;

pub(crate) async fn run(args: RunArgs) -> Result<(), RunError> {
    let command = workload(&args)?;
    let format = args.output.format_or(Format::Json);
    let (pod_uid, _) = ids(0);
    let output = WorkloadStdio::open(&args.workload_output, format, &pod_uid)?;
    let mut signals = Signals::install()?;
    let mut sinks = Sinks::new().with(Stdout::new(format));
    let health = Arc::new(Health::default());
    if let Some(addr) = args.listen {
        let metrics = Arc::new(Metrics::new());
        sinks = sinks.with(MetricsSink::new(metrics.clone()));
        let local = health::serve_with_metrics(addr, health.clone(), Some(metrics)).await?;
        tracing::info!("metrics on http://{local}/metrics");
    }
    let hierarchy = MemoryHierarchy::detect()?;
    let tracer = startup::load(&args.trace.load_options(hierarchy.hierarchy_id, false))?;
    let translator = Translator::new(
        BootClock::measure(),
        CgroupIndex::new(Some(hierarchy.clone())),
    );
    let analysis = Analysis::new(args.backoff.policy(), args.pressure.options());
    let mut p = Pipeline::new(tracer, translator, FixedPod::default(), sinks, analysis)
        .with_health(health.clone());
    p.callsites_as_gone(args.trace.test_callsites_as_gone);
    // The check's child goes into a probe cgroup beside the pod; `run`
    // removes the parent when it is empty at the end.
    let site = ProbeSite {
        parent: args.cgroup_parent.clone(),
        remove_parent: false,
    };
    p.check_breakdown(site, args.trace.test_corrupt_stat_layout);
    p.start(Mode::Run, Some(hierarchy.version)).await?;
    host::settle();
    health.set_ready();

    let mut kubelet = LocalKubelet {
        p: &mut p,
        args: &args,
        command: &command,
        output: &output,
        pod_uid: &pod_uid,
        restarts: 0,
    };
    let result = kubelet.run_pod(&hierarchy, &mut signals).await;
    let restarts = kubelet.restarts;
    let reason = match &result {
        Ok(reason) => reason.clone(),
        Err(e) => StopReason::Error(errors::chain(e)),
    };
    let stopped = p.stop(reason, restarts).await;
    // The startup check's probe cgroup below the parent is gone once the
    // pipeline is (`stop` ends the check, and so does its drop on an
    // error): only then can the parent go too.
    drop(p);
    remove_parent_if_empty(&hierarchy, &args.cgroup_parent);
    stopped?;
    result.map(|_| ())
}

/// Why the workload is not started again.
enum Next {
    Restart,
    Stop(StopReason),
}

/// `run`'s kubelet: one pod, one container, restarted with back-off.
struct LocalKubelet<'a> {
    p: &'a mut RunPipeline,
    args: &'a RunArgs,
    command: &'a [OsString],
    /// Where the workload's stdout and stderr go, for every start.
    output: &'a WorkloadStdio,
    pod_uid: &'a str,
    restarts: u32,
}

impl LocalKubelet<'_> {
    /// Creates the pod cgroup, runs the container until a stop condition,
    /// and removes the pod cgroup again, however that went (the parent goes
    /// after the pipeline, see [`run`]).
    async fn run_pod(
        &mut self,
        hierarchy: &MemoryHierarchy,
        signals: &mut Signals,
    ) -> Result<StopReason, RunError> {
        let pod_limit = self.args.pod_memory_limit.and_then(|l| l.0);
        let pods = PodCgroups::create(
            hierarchy,
            &self.args.cgroup_parent,
            &format!("pod{}", self.pod_uid),
            pod_limit,
        )?;
        let result = self.restart_loop(&pods, signals).await;
        if let Err(e) = pods.pod.remove(Duration::from_secs(5)) {
            tracing::warn!("{}", errors::chain(&e));
        }
        result
    }

    /// Start → exit → back-off → restart, until a stop condition.
    async fn restart_loop(
        &mut self,
        pods: &PodCgroups,
        signals: &mut Signals,
    ) -> Result<StopReason, RunError> {
        self.p.watch(pods.pod.id, &pods.pod.path)?;
        let pod = PodRef {
            namespace: Some(self.args.namespace.clone()),
            name: Some(self.args.pod_name.clone()),
            uid: self.pod_uid.to_owned(),
        };
        let mut backoff = Backoff::new(self.args.backoff.policy());
        let mut container = self.container(&pod, pods, 0);
        loop {
            let (ended, ran) = self.run_container(pods, &container, signals).await?;
            let reason = match ended {
                Ended::Exited(reason) => reason,
                Ended::Stopped(signal) => return Ok(StopReason::Signal(signal.into())),
            };
            if let Next::Stop(why) = self.next(reason) {
                return Ok(why);
            }
            let delay = backoff.next_delay(ran);
            let next = self.container(&pod, pods, self.restarts + 1);
            if let Some(signal) = self
                .back_off(&container, &next, delay, reason, signals)
                .await?
            {
                return Ok(StopReason::Signal(signal.into()));
            }
            self.restarts += 1;
            container = next;
        }
    }

    /// The container of attempt `restarts` (a new cgroup each time, as the
    /// kubelet makes a new container for each restart).
    fn container(&self, pod: &PodRef, pods: &PodCgroups, restarts: u32) -> Container {
        let (_, id) = ids(u64::from(restarts) + 1);
        Container {
            pod: pod.clone(),
            container: ContainerRef {
                name: Some(self.args.container_name.clone()),
                id: id.clone(),
                restart_count: Some(restarts),
            },
            path: format!("{}/{id}", pods.pod.path),
            pod_cgroup_id: pods.pod.id,
            limit_bytes: self.args.memory_limit.0,
            pod_limit_bytes: self.args.pod_memory_limit.and_then(|l| l.0),
            command: lossy(self.command),
        }
    }

    /// Runs one attempt of the container to its end; returns how it ended
    /// and how long it ran.
    async fn run_container(
        &mut self,
        pods: &PodCgroups,
        c: &Container,
        signals: &mut Signals,
    ) -> Result<(Ended, Duration), RunError> {
        let ctr = pods.create_container(&c.container.id, c.limit_bytes)?;
        self.p.pods().add(ctr.id, c.clone());
        self.p.watch(ctr.id, &ctr.path)?;
        let started = std::time::Instant::now();
        let mut child = match spawn(self.command, &ctr, self.output) {
            Ok(child) => child,
            Err(e) => {
                let _ = ctr.remove(Duration::from_secs(1));
                return Err(e);
            }
        };
        let result = self.supervise(&ctr, &mut child, signals).await;
        let ran = started.elapsed();
        if let Err(e) = ctr.remove(Duration::from_secs(5)) {
            tracing::warn!("{}", errors::chain(&e));
        }
        self.p.pump().await?;
        self.p.unwatch(ctr.id);
        Ok((result?, ran))
    }

    /// Traces the workload until it exits; a stop signal kills it first,
    /// as a runtime stopping the container would.
    async fn supervise(
        &mut self,
        ctr: &crate::cgroup::pod::OwnedCgroup,
        child: &mut tokio::process::Child,
        signals: &mut Signals,
    ) -> Result<Ended, RunError> {
        self.p.spawned(ctr.id, child.id().unwrap_or(0)).await?;
        let mut stopped_by = None;
        let status = loop {
            match self.p.trace_until(signals, child.wait()).await? {
                Until::Done(status) => break status.map_err(RunError::Wait)?,
                Until::Signal(s) => {
                    stopped_by.get_or_insert(s);
                    kill_all(ctr);
                }
            }
        };
        let signal = status.signal().map(|s| s as u32);
        let code = status.code().map(|c| c as u32);
        let reason = self.p.reaped(ctr.id, signal, code).await?;
        Ok(match stopped_by {
            Some(s) => Ended::Stopped(s),
            None => Ended::Exited(reason.unwrap_or(ExitReason::Error)),
        })
    }

    /// Whether the restart policy and `--max-restarts` allow another run.
    fn next(&self, reason: ExitReason) -> Next {
        let restart = match self.args.restart_policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => reason != ExitReason::Completed,
            RestartPolicy::Never => false,
        };
        if !restart {
            Next::Stop(StopReason::RestartPolicy)
        } else if self.args.max_restarts.is_some_and(|m| self.restarts >= m) {
            Next::Stop(StopReason::MaxRestarts)
        } else {
            Next::Restart
        }
    }

    /// CrashLoopBackOff: the `backoff` record, the wait (tracing on), then
    /// the `restart` record. Returns the signal that cut the wait short.
    async fn back_off(
        &mut self,
        prev: &Container,
        next: &Container,
        delay: Duration,
        last_reason: ExitReason,
        signals: &mut Signals,
    ) -> Result<Option<&'static str>, RunError> {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.p
            .emit(BackoffRecord {
                pod: prev.pod.clone(),
                container: prev.container.clone(),
                state: ContainerState::CrashLoopBackOff,
                backoff_ms: delay_ms,
                next_restart_at: Timestamp::now() + delay,
            })
            .await?;
        if let Until::Signal(s) = self
            .p
            .trace_until(signals, tokio::time::sleep(delay))
            .await?
        {
            return Ok(Some(s));
        }
        let restart = Restart {
            pod: next.pod.clone(),
            container: next.container.clone(),
            restart_count: self.restarts + 1,
            backoff_ms: delay_ms,
            last_reason,
        };
        self.p.restarted(restart, next).await?;
        Ok(None)
    }
}

/// How one attempt ended.
enum Ended {
    /// The workload exited; the container's reason.
    Exited(ExitReason),
    /// A stop signal ended it (its name).
    Stopped(&'static str),
}

fn remove_parent_if_empty(h: &MemoryHierarchy, parent: &str) {
    let dir = h.dir(parent);
    if dir != h.mount {
        // Fails while other runs use it: that is fine.
        let _ = std::fs::remove_dir(dir);
    }
}
