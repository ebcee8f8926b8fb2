//! `oom-tracer agent`: the DaemonSet mode. It traces every memcg OOM kill
//! on the node and the lifecycle of every Kubernetes container, with no
//! fixed watch list, and enriches records with pod and container identity
//! from the CRI and the Kubernetes API (`meta`). Containers already running
//! at startup are rediscovered from the cgroup tree.
use std::{sync::Arc, time::Duration};

use oom_tracer_common::decode::RawEvent;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::MissedTickBehavior,
};

mod args;
pub mod containers;
mod event;
mod lifecycle;

pub use args::{AgentArgs, KubeApi};
use event::oom_event;
use lifecycle::Sighting;

use containers::{CgroupRole, Containers, role};

use crate::{
    bpf::loader::{LoadError, Tracer},
    cgroup::{CgroupError, CgroupVersion, MemoryHierarchy, index::CgroupIndex},
    clock::BootClock,
    health::{self, Health},
    meta::{Metadata, cri, kube::KubeSource},
    output::{Output, OutputError},
    record::{Body, Record},
    host::kernel_release,
    translate::{Translator, decode_exit_code},
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Listen(#[from] health::ListenError),
    #[error("installing the {what} handler")]
    Signal {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// cgroup directory names that root the kubelet's pods.
fn is_kubepods_root(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    matches!(
        last,
        "kubepods" | "kubepods.slice" | "kubelet-kubepods.slice"
    )
}

/// A memory limit as read from the cgroup (`None`: unlimited or unreadable).
fn read_limit(h: &MemoryHierarchy, path: &str) -> Option<u64> {
    let dir = h.dir(path);
    let file = match h.version {
        CgroupVersion::V1 => dir.join("memory.limit_in_bytes"),
        CgroupVersion::V2 => dir.join("memory.max"),
    };
    let v: u64 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    // v1 reports "unlimited" as PAGE_COUNTER_MAX pages in bytes.
    (v < (1u64 << 62)).then_some(v)
}

struct Agent<'a> {
    tracer: Tracer,
    tr: Translator,
    out: &'a mut Output,
    meta: Metadata,
    ctrs: Containers,
    hierarchy: MemoryHierarchy,
    roots: Vec<u64>,
    lost_seen: u64,
    health: Arc<Health>,
    events: Option<crate::meta::kube::EventPoster>,
}

impl Agent<'_> {
    fn emit(&mut self, time: String, body: Body) -> Result<(), AgentError> {
        Ok(self.out.emit(&Record::new(time, body))?)
    }

    /// Watches new kubepods roots (the kubelet may start after the agent).
    fn watch_roots(&mut self) {
        self.tr.index.scan();
        let found: Vec<(u64, String)> = self
            .tr
            .index
            .entries()
            .filter(|(_, p)| is_kubepods_root(p))
            .map(|(id, p)| (id, p.to_owned()))
            .collect();
        for (id, path) in found {
            if !self.roots.contains(&id) {
                match self.tracer.watch(id) {
                    Ok(()) => {
                        tracing::info!("watching pods under {path}");
                        self.roots.push(id);
                        self.tr.watch_path(&path);
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
    }

    /// Handles one kernel record: container bookkeeping, then the record.
    async fn handle(&mut self, ev: &RawEvent) -> Result<(), AgentError> {
        let memcg = match ev {
            RawEvent::Exec(e) => e.task.memcg_id,
            RawEvent::Exit(e) => e.task.memcg_id,
            RawEvent::Alloc(e) => e.task.memcg_id,
            RawEvent::Oom(e) => e.victim.memcg_id,
            RawEvent::Signal(e) => e.target.memcg_id,
            _ => 0,
        };
        if memcg != 0 && self.ctrs.is_skipped(memcg) {
            return Ok(());
        }
        self.complete_meta(memcg);
        if let RawEvent::Exec(e) = ev
            && self.ctrs.get(memcg).is_none()
            && let Some(path) = self.tr.index.resolve(memcg)
        {
            match role(&path) {
                CgroupRole::Container { pod_uid, id } => {
                    let comm =
                        String::from_utf8_lossy(oom_tracer_common::decode::c_bytes(&e.task.comm))
                            .into_owned();
                    if let Some(r) = self.tr.translate(ev) {
                        self.out.emit(&r)?;
                    }
                    return self
                        .track(Sighting {
                            cgroup_id: memcg,
                            path: &path,
                            pod_uid: &pod_uid,
                            id: &id,
                            pid: e.task.tgid,
                            comm: &comm,
                            at_ns: e.hdr.boot_ns,
                            discovered: false,
                        })
                        .await;
                }
                CgroupRole::Skip => {
                    self.ctrs.skip(memcg);
                    return Ok(());
                }
                CgroupRole::Other => {}
            }
        }
        if let Some(r) = self.tr.translate(ev) {
            self.out.emit(&r)?;
            if let (Some(poster), Some(ev)) = (self.events.as_mut(), oom_event(&r)) {
                poster.post(ev);
            }
        }
        match ev {
            RawEvent::Exit(e) => {
                let oom = self
                    .tr
                    .oom_kills_by_cgroup
                    .get(&memcg)
                    .copied()
                    .unwrap_or(0)
                    > 0;
                if let Some(t) = self.ctrs.by_main_pid(memcg, e.task.tgid) {
                    t.exited = true;
                    let (signal, code, _) = decode_exit_code(e.exit_code);
                    let exit_code = match (signal, code) {
                        (Some(s), _) => 128 + s as i32,
                        (None, Some(c)) => c as i32,
                        _ => 0,
                    };
                    // Kubernetes' words: the runtime calls any exit of a
                    // container whose cgroup saw an OOM kill "OOMKilled".
                    let reason = if oom && signal == Some(9) {
                        "OOMKilled"
                    } else if exit_code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    };
                    let t = t.clone();
                    let verdict = self.tr.take_exit_verdict(e.task.tgid);
                    self.ctrs.exited(
                        &t.info.pod.uid,
                        t.info.name.as_deref(),
                        e.hdr.boot_ns,
                        reason,
                    );
                    let time = self.tr.time(e.hdr.boot_ns);
                    self.emit(
                        time,
                        Body::ContainerExit {
                            pod: t.pod_ref(),
                            container: t.container_ref(),
                            exit_code,
                            signal: signal.map(|s| s as i32),
                            reason: reason.into(),
                            verdict,
                            ran_ms: e.hdr.boot_ns.saturating_sub(t.started_ns) / 1_000_000,
                        },
                    )?;
                }
            }
            RawEvent::CgroupRmdir(c) => {
                self.ctrs.removed(c.id);
                self.tr.container_removed(c.id);
            }
            RawEvent::CgroupMkdir(c) => {
                // The kubelet just created its pods' root: watch it now, not
                // at the next rescan, so the first containers are seen.
                if let Some(path) = self.tr.index.resolve(c.id)
                    && is_kubepods_root(&path)
                    && !self.roots.contains(&c.id)
                    && self.tracer.watch(c.id).is_ok()
                {
                    tracing::info!("watching pods under {path}");
                    self.roots.push(c.id);
                    self.tr.watch_path(&path);
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn pump(&mut self) -> Result<(), AgentError> {
        let mut evs = Vec::new();
        self.tracer.drain(&mut evs);
        for ev in &evs {
            self.handle(ev).await?;
        }
        let (full, _) = self.tracer.counters();
        if full != self.lost_seen {
            let time = self.tr.now();
            self.emit(
                time,
                Body::Lost {
                    ringbuf_full: full - self.lost_seen.min(full),
                    read_errors: 0,
                },
            )?;
            tracing::warn!("ring buffer: {full} records lost so far");
            self.lost_seen = full;
        }
        self.health.tick();
        Ok(())
    }
}

pub async fn run(args: AgentArgs, out: &mut Output) -> Result<(), AgentError> {
    let sig = |kind, what| signal(kind).map_err(|source| AgentError::Signal { what, source });
    let mut sigint = sig(SignalKind::interrupt(), "SIGINT")?;
    let mut sigterm = sig(SignalKind::terminate(), "SIGTERM")?;
    let health = Arc::new(Health::default());
    health.tick();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    out.set_metrics(metrics.clone());
    if let Some(addr) = args.listen {
        let local = health::serve_with_metrics(addr, health.clone(), Some(metrics.clone())).await?;
        tracing::info!("http://{local}/metrics, /healthz and /readyz");
    }
    let hierarchy = MemoryHierarchy::detect()?;
    let tracer = Tracer::load(args.trace.load_options(hierarchy.hierarchy_id, true))?;
    let cri = if args.no_cri {
        None
    } else {
        match cri::pick_socket(args.cri_socket.as_deref()) {
            Ok(s) => Some(cri::Cri::new(s)),
            Err(e) => {
                tracing::warn!("{e}: pod names come from the Kubernetes API only");
                None
            }
        }
    };
    let kube = match args.kube_api {
        KubeApi::Off => None,
        KubeApi::Auto => {
            match KubeSource::start(args.node_name.as_deref(), args.kubeconfig.as_deref()).await {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::info!(
                        "Kubernetes API source off: {}",
                        crate::bpf::hooks::error_chain(&e)
                    );
                    None
                }
            }
        }
    };
    let events = match (&kube, args.post_events) {
        (Some(k), true) => Some(k.event_poster(args.node_name.clone())),
        (None, true) => {
            tracing::warn!(
                "--post-events needs the Kubernetes API source, which is off: no Events will be posted"
            );
            None
        }
        _ => None,
    };
    let clock = BootClock::measure();
    let mut tr = Translator::new(clock, CgroupIndex::new(Some(hierarchy.clone())), false);
    tr.index.scan();
    let mut a = Agent {
        tracer,
        tr,
        out,
        meta: Metadata::new(cri, kube),
        ctrs: Containers::default(),
        hierarchy,
        roots: Vec::new(),
        lost_seen: 0,
        health: health.clone(),
        events,
    };
    let start = Body::Start {
        version: env!("CARGO_PKG_VERSION").into(),
        mode: "agent".into(),
        kernel: kernel_release(),
        cgroup_version: Some(format!("{:?}", a.hierarchy.version).to_lowercase()),
        hooks: a.tracer.report.status.clone(),
        startup_ms: a.tracer.startup.as_millis() as u64,
    };
    let now = a.tr.now();
    a.emit(now, start)?;
    a.watch_roots();
    if a.roots.is_empty() {
        tracing::warn!(
            "no kubepods cgroup on this node yet: OOM kills are still traced everywhere; containers are picked up when the kubelet creates kubepods"
        );
    }
    a.discover().await?;
    // Startup parsed BTF and listed the runtime: give that memory back.
    crate::host::trim_heap();
    health.set_ready();
    tracing::info!(
        "agent ready: {} containers running, CRI {}, Kubernetes API {}",
        a.ctrs.by_cgroup.len(),
        if a.meta.has_cri() { "on" } else { "off" },
        if a.meta.has_kube() { "on" } else { "off" }
    );

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rescan = tokio::time::interval(args.rescan_interval.max(Duration::from_millis(100)));
    rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            _ = sigint.recv() => break "signal SIGINT",
            _ = sigterm.recv() => break "signal SIGTERM",
            () = a.tracer.readable() => a.pump().await?,
            _ = tick.tick() => a.pump().await?,
            _ = rescan.tick() => {
                a.watch_roots();
                a.meta.refresh().await;
            }
        }
    };
    a.pump().await?;
    let (lost, _) = a.tracer.counters();
    let now = a.tr.now();
    a.out.finish(&now)?;
    let records = a.out.records + 1;
    a.emit(
        now,
        Body::Stop {
            reason: reason.into(),
            restarts: 0,
            oom_kills: a.tr.oom_kills,
            records,
            lost_events: lost,
            decode_errors: a.tracer.decode_errors,
            unresolved_cgroups: a.tr.index.unresolved,
            hook_stats: a.tracer.hook_stats(),
        },
    )?;
    Ok(())
}
