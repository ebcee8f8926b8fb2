//! `oom-tracer run`: the kubelet's part on one box. It creates a pod-like
//! cgroup pair, runs the workload in the container cgroup under a memory
//! limit, traces it, and restarts it with the kubelet's back-off until
//! `--max-restarts`, Ctrl-C or SIGTERM. Its cgroups are removed on every
//! way out.
use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use oom_tracer_common::decode::RawEvent;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    time::MissedTickBehavior,
};

mod workload;

use workload::{ids, kill_all, lossy, spawn, workload};

use crate::{
    backoff::Backoff,
    bpf::loader::{LoadError, Tracer, WatchError},
    cgroup::{CgroupError, MemoryHierarchy, index::CgroupIndex, pod::PodCgroups},
    cli::{RestartPolicy, RunArgs},
    clock::{BootClock, rfc3339},
    output::{Output, OutputError},
    record::{Body, ContainerRef, PodRef, Record},
    translate::{ContainerMeta, Translator},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("starting {command:?}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Listen(crate::health::ListenError),
    #[error("waiting for the workload")]
    Wait(#[source] std::io::Error),
    #[error("installing the {what} handler")]
    Signal {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no `stress` binary next to {exe}; build it with `cargo xtask build` or give a command after `--`"
    )]
    NoStress { exe: PathBuf },
}

/// Why the loop ended.
enum Stop {
    MaxRestarts,
    Policy,
    Signal(&'static str),
}

impl Stop {
    fn reason(&self) -> String {
        match self {
            Stop::MaxRestarts => "max_restarts".into(),
            Stop::Policy => "restart_policy".into(),
            Stop::Signal(s) => format!("signal {s}"),
        }
    }
}

struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn install() -> Result<Self, RunError> {
        let mk = |kind, what| signal(kind).map_err(|source| RunError::Signal { what, source });
        Ok(Self {
            int: mk(SignalKind::interrupt(), "SIGINT")?,
            term: mk(SignalKind::terminate(), "SIGTERM")?,
        })
    }
}

struct Runner<'a> {
    tracer: Tracer,
    tr: Translator,
    out: &'a mut Output,
    lost_seen: (u64, u64),
}

impl Runner<'_> {
    /// Drains the ring buffer into records, and reports new losses.
    fn pump(&mut self) -> Result<(), RunError> {
        let mut evs: Vec<RawEvent> = Vec::new();
        self.tracer.drain(&mut evs);
        for ev in &evs {
            if let Some(r) = self.tr.translate(ev) {
                self.out.emit(&r)?;
            }
        }
        let (full, errs) = self.tracer.counters();
        if (full, errs) != self.lost_seen {
            let r = Record::new(
                self.tr.now(),
                Body::Lost {
                    ringbuf_full: full - self.lost_seen.0.min(full),
                    read_errors: errs - self.lost_seen.1.min(errs),
                },
            );
            tracing::warn!("ring buffer: {full} records lost so far");
            self.lost_seen = (full, errs);
            self.out.emit(&r)?;
        }
        Ok(())
    }

    /// Emits a userspace record after the kernel's records so far, so the
    /// output stays in time order.
    fn emit(&mut self, body: Body) -> Result<(), RunError> {
        self.pump()?;
        let r = Record::new(self.tr.now(), body);
        Ok(self.out.emit(&r)?)
    }

    /// Traces until `deadline` (or forever) or a signal; returns the signal.
    async fn trace_for(
        &mut self,
        sigs: &mut Signals,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<&'static str>, RunError> {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let sleep = tokio::time::sleep_until(
            deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400 * 365)),
        );
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = sigs.int.recv() => return Ok(Some("SIGINT")),
                _ = sigs.term.recv() => return Ok(Some("SIGTERM")),
                () = &mut sleep => return Ok(None),
                () = self.tracer.readable() => self.pump()?,
                _ = tick.tick() => self.pump()?,
            }
        }
    }
}

pub async fn run(args: RunArgs, out: &mut Output) -> Result<(), RunError> {
    let command = workload(&args)?;
    let mut sigs = Signals::install()?;
    if let Some(addr) = args.listen {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        out.set_metrics(metrics.clone());
        let health = std::sync::Arc::new(crate::health::Health::default());
        health.set_ready();
        let local = crate::health::serve_with_metrics(addr, health.clone(), Some(metrics))
            .await
            .map_err(RunError::Listen)?;
        // Liveness follows the event loop's ticks.
        tokio::spawn(async move {
            loop {
                health.tick();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        tracing::info!("metrics on http://{local}/metrics");
    }
    let hierarchy = MemoryHierarchy::detect()?;
    let tracer = Tracer::load(args.trace.load_options(hierarchy.hierarchy_id, false))?;
    let clock = BootClock::measure();
    let tr = Translator::new(clock, CgroupIndex::new(Some(hierarchy.clone())), false);
    let mut r = Runner {
        tracer,
        tr,
        out,
        lost_seen: (0, 0),
    };
    r.emit(Body::Start {
        version: env!("CARGO_PKG_VERSION").into(),
        mode: "run".into(),
        kernel: crate::host::kernel_release(),
        cgroup_version: Some(format!("{:?}", hierarchy.version).to_lowercase()),
        hooks: r.tracer.report.status.clone(),
        startup_ms: r.tracer.startup.as_millis() as u64,
    })?;

    let (pod_uid, _) = ids(0);
    let pod_limit = args.pod_memory_limit.and_then(|l| l.0);
    let pods = PodCgroups::create(
        &hierarchy,
        &args.cgroup_parent,
        &format!("pod{pod_uid}"),
        pod_limit,
    )?;
    let result = cycle(&mut r, &mut sigs, &args, &command, &pods, &pod_uid).await;
    // Cleanup on every way out, then the final records.
    if let Err(e) = pods.pod.remove(Duration::from_secs(5)) {
        tracing::warn!("{e}");
    }
    remove_parent_if_empty(&hierarchy, &args.cgroup_parent);
    let restarts = match &result {
        Ok((_, n)) => *n,
        Err(_) => 0,
    };
    let _ = r.pump();
    let (lost, _) = r.tracer.counters();
    let now = r.tr.now();
    r.out.finish(&now)?;
    let reason = match &result {
        Ok((stop, _)) => stop.reason(),
        Err(e) => format!("error: {e}"),
    };
    r.emit(Body::Stop {
        reason,
        restarts,
        oom_kills: r.tr.oom_kills,
        records: r.out.records + 1,
        lost_events: lost,
        decode_errors: r.tracer.decode_errors,
        unresolved_cgroups: r.tr.index.unresolved,
        hook_stats: r.tracer.hook_stats(),
    })?;
    result.map(|_| ())
}

fn remove_parent_if_empty(h: &MemoryHierarchy, parent: &str) {
    let dir = h.dir(parent);
    if dir != h.mount {
        // Fails while other runs use it: that is fine.
        let _ = std::fs::remove_dir(dir);
    }
}

/// Start → exit → back-off → restart, until a stop condition.
async fn cycle(
    r: &mut Runner<'_>,
    sigs: &mut Signals,
    args: &RunArgs,
    command: &[OsString],
    pods: &PodCgroups,
    pod_uid: &str,
) -> Result<(Stop, u32), RunError> {
    r.tracer.watch(pods.pod.id)?;
    r.tr.index.insert(pods.pod.id, pods.pod.path.clone());
    r.tr.watch_path(&pods.pod.path);
    let pod = PodRef {
        namespace: Some(args.namespace.clone()),
        name: Some(args.pod_name.clone()),
        uid: pod_uid.to_owned(),
    };
    let mut backoff = Backoff::new(args.backoff.policy());
    let pod_limit = args.pod_memory_limit.and_then(|l| l.0);
    let mut restart_count: u32 = 0;
    let (_, mut cid) = ids(1);
    loop {
        let container = ContainerRef {
            name: Some(args.container_name.clone()),
            id: cid.clone(),
            restart_count: Some(restart_count),
        };
        let ctr = pods.create_container(&cid, args.memory_limit.0)?;
        r.tracer.watch(ctr.id)?;
        r.tr.add_container(
            ctr.id,
            &ctr.path,
            ContainerMeta {
                pod: pod.clone(),
                container: container.clone(),
                pod_cgroup_id: pods.pod.id,
                limit_bytes: args.memory_limit.0,
                pod_limit_bytes: pod_limit,
            },
        );
        let started = Instant::now();
        let mut child = match spawn(command, &ctr) {
            Ok(c) => c,
            Err(e) => {
                let _ = ctr.remove(Duration::from_secs(1));
                return Err(e);
            }
        };
        let child_pid = child.id().unwrap_or(0);
        r.emit(Body::ContainerStart {
            pod: pod.clone(),
            container: container.clone(),
            cgroup: ctr.path.clone(),
            pid: child_pid,
            command: lossy(command),
            memory_limit_bytes: args.memory_limit.0,
            pod_memory_limit_bytes: pod_limit,
            discovered: false,
        })?;

        // Trace until the workload exits or we are told to stop.
        let mut stop_signal = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let status = loop {
            tokio::select! {
                st = child.wait() => break st.map_err(RunError::Wait)?,
                _ = sigs.int.recv(), if stop_signal.is_none() => {
                    stop_signal = Some("SIGINT");
                    kill_all(&ctr);
                }
                _ = sigs.term.recv(), if stop_signal.is_none() => {
                    stop_signal = Some("SIGTERM");
                    kill_all(&ctr);
                }
                () = r.tracer.readable() => r.pump()?,
                _ = tick.tick() => r.pump()?,
            }
        };
        let ran = started.elapsed();
        // Everything the kernel recorded up to the exit is in the ring now.
        r.pump()?;
        let signal = status.signal();
        let exit_code = status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
        let oom_killed = r.tr.oom_kills_by_cgroup.get(&ctr.id).copied().unwrap_or(0) > 0;
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let verdict = r.tr.take_exit_verdict(child_pid);
        r.emit(Body::ContainerExit {
            pod: pod.clone(),
            container: container.clone(),
            exit_code,
            signal,
            reason: reason.into(),
            verdict,
            ran_ms: ran.as_millis() as u64,
        })?;
        if let Err(e) = ctr.remove(Duration::from_secs(5)) {
            tracing::warn!("{e}");
        }
        r.pump()?;
        r.tracer.unwatch(ctr.id);
        r.tr.container_removed(ctr.id);

        if let Some(s) = stop_signal {
            return Ok((Stop::Signal(s), restart_count));
        }
        let restart = match args.restart_policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        };
        if !restart {
            return Ok((Stop::Policy, restart_count));
        }
        if args.max_restarts.is_some_and(|m| restart_count >= m) {
            return Ok((Stop::MaxRestarts, restart_count));
        }
        let delay = backoff.next_delay(ran);
        let next_at = SystemTime::now() + delay;
        r.emit(Body::Backoff {
            pod: pod.clone(),
            container: container.clone(),
            state: "CrashLoopBackOff".into(),
            backoff_ms: delay.as_millis() as u64,
            next_restart_at: rfc3339(next_at),
        })?;
        let deadline = tokio::time::Instant::now() + delay;
        if let Some(s) = r.trace_for(sigs, Some(deadline)).await? {
            return Ok((Stop::Signal(s), restart_count));
        }
        restart_count += 1;
        cid = ids(u64::from(restart_count) + 1).1;
        r.emit(Body::Restart {
            pod: pod.clone(),
            container: ContainerRef {
                restart_count: Some(restart_count),
                id: cid.clone(),
                ..container
            },
            restart_count,
            backoff_ms: delay.as_millis() as u64,
            last_reason: reason.into(),
        })?;
    }
}
