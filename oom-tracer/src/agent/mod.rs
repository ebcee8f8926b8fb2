//! `oom-tracer agent`: the DaemonSet mode. It traces every memcg OOM kill
//! on the node and the lifecycle of every Kubernetes container, with no
//! fixed watch list, and enriches records with pod and container identity
//! from the CRI and the Kubernetes API (`meta`). Containers already running
//! at startup are rediscovered from the cgroup tree.
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use clap::Args;
use oom_tracer_common::decode::RawEvent;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::MissedTickBehavior,
};

pub mod containers;

use containers::{CgroupRole, Containers, Tracked, role};

use crate::{
    bpf::loader::{LoadError, Tracer},
    cgroup::{CgroupError, CgroupVersion, MemoryHierarchy, index::CgroupIndex, pod::procs},
    cli::TraceArgs,
    clock::BootClock,
    health::{self, Health},
    kubepath,
    meta::{Metadata, cri, kube::KubeSource},
    output::{Output, OutputError},
    record::{Body, Record},
    run::kernel_release,
    translate::{ContainerMeta, Translator, decode_exit_code},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeApi {
    /// Use the API when a configuration is found (in-cluster or KUBECONFIG).
    Auto,
    Off,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// This node's name (from the downward API): the API source lists only its pods.
    #[arg(long, env = "OOM_TRACER_NODE_NAME")]
    pub node_name: Option<String>,
    /// CRI socket (default: the first of containerd, cri-o, k3s, cri-dockerd that exists).
    #[arg(long, env = "OOM_TRACER_CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,
    /// Do not use the CRI.
    #[arg(long, env = "OOM_TRACER_NO_CRI")]
    pub no_cri: bool,
    /// Whether to use the Kubernetes API.
    #[arg(long, env = "OOM_TRACER_KUBE_API", value_enum, default_value = "auto")]
    pub kube_api: KubeApi,
    /// A kubeconfig file for the API (default: in-cluster config, then $KUBECONFIG).
    #[arg(long, env = "OOM_TRACER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Post a Kubernetes Event on the pod for each OOM kill (needs the API
    /// source and RBAC `create` on events).
    #[arg(long, env = "OOM_TRACER_POST_EVENTS")]
    pub post_events: bool,
    /// How often to look for new kubepods roots and re-list the runtime.
    #[arg(long, env = "OOM_TRACER_RESCAN_INTERVAL", default_value = "10s", value_parser = crate::cli::parse_duration)]
    pub rescan_interval: Duration,
    /// Address of the /healthz and /readyz endpoint (e.g. 0.0.0.0:9090).
    #[arg(long, env = "OOM_TRACER_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub backoff: crate::cli::BackoffArgs,
    #[command(flatten)]
    pub trace: TraceArgs,
}

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

/// The Kubernetes Event for an `oom_kill` record of a known pod.
fn oom_event(r: &Record) -> Option<crate::meta::kube::OomEvent> {
    let Body::OomKill {
        victim,
        trigger,
        memcg,
        pod: Some(pod),
        container,
        kind,
        ..
    } = &r.body
    else {
        return None;
    };
    let b = crate::quantity::format_bytes;
    let limit = match memcg {
        Some(m) => format!(
            "{} limit hit: usage {} of {}",
            m.level
                .and_then(|l| serde_json::to_value(l).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "memory cgroup".into()),
            b(m.usage_bytes),
            b(m.limit_bytes)
        ),
        None => format!("{kind} OOM"),
    };
    Some(crate::meta::kube::OomEvent {
        namespace: pod.namespace.clone()?,
        pod: pod.name.clone()?,
        uid: pod.uid.clone(),
        container: container.as_ref().and_then(|c| c.name.clone()),
        message: format!(
            "OOM kill: victim {} (pid {}, anon {}), triggered by {} (pid {}); {limit}",
            victim.comm,
            victim.pid,
            victim.anon_rss_bytes.map_or("?".into(), b),
            trigger.comm,
            trigger.pid
        ),
    })
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

/// A container cgroup seen for the first time.
struct Sighting<'a> {
    cgroup_id: u64,
    path: &'a str,
    pod_uid: &'a str,
    /// The runtime's container id.
    id: &'a str,
    /// Its main process (the first exec, or the lowest pid when discovered).
    pid: u32,
    comm: &'a str,
    at_ns: u64,
    /// Found running at the agent's start.
    discovered: bool,
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

    /// Starts tracking a container cgroup, once.
    async fn track(&mut self, c: Sighting<'_>) -> Result<(), AgentError> {
        let Sighting {
            cgroup_id,
            path,
            pod_uid,
            id,
            pid,
            comm,
            at_ns,
            discovered,
        } = c;
        self.meta.refresh_for(id).await;
        // The pod sandbox runs `pause`: the runtime says so, or its comm does.
        if self.meta.is_sandbox(id) || comm == "pause" {
            self.ctrs.skip(cgroup_id);
            return Ok(());
        }
        let info = self.meta.container(pod_uid, id);
        let pod_path = kubepath::pod_path(path).unwrap_or("").to_owned();
        let pod_cgroup_id = self.tr.index.id_of(&pod_path).unwrap_or(0);
        let t = Tracked {
            cgroup_id,
            path: path.to_owned(),
            info,
            main_pid: pid,
            started_ns: at_ns,
            exited: false,
        };
        let limit = read_limit(&self.hierarchy, path);
        let pod_limit = read_limit(&self.hierarchy, &pod_path);
        self.tr.add_container(
            cgroup_id,
            path,
            ContainerMeta {
                pod: t.pod_ref(),
                container: t.container_ref(),
                pod_cgroup_id,
                limit_bytes: limit,
                pod_limit_bytes: pod_limit,
            },
        );
        let time = self.tr.time(at_ns);
        self.emit(
            time.clone(),
            Body::ContainerStart {
                pod: t.pod_ref(),
                container: t.container_ref(),
                cgroup: path.to_owned(),
                pid,
                command: Vec::new(),
                memory_limit_bytes: limit,
                pod_memory_limit_bytes: pod_limit,
                discovered,
            },
        )?;
        if !discovered
            && let Some(prev) = self
                .ctrs
                .take_previous(&t.info.pod.uid, t.info.name.as_deref())
        {
            self.emit(
                time,
                Body::Restart {
                    pod: t.pod_ref(),
                    container: t.container_ref(),
                    restart_count: t.info.restart_count.unwrap_or(0),
                    backoff_ms: at_ns.saturating_sub(prev.at_ns) / 1_000_000,
                    last_reason: prev.reason,
                },
            )?;
        }
        self.ctrs.track(t);
        Ok(())
    }

    /// Containers running before the agent started.
    async fn discover(&mut self) -> Result<(), AgentError> {
        self.meta.refresh().await;
        let found: Vec<(u64, String)> = self
            .tr
            .index
            .entries()
            .map(|(id, p)| (id, p.to_owned()))
            .collect();
        for (id, path) in found {
            if let CgroupRole::Container { pod_uid, id: cid } = role(&path) {
                let mut pids = procs(&self.hierarchy.dir(&path));
                pids.sort_unstable();
                let Some(&pid) = pids.first() else { continue };
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                self.track(Sighting {
                    cgroup_id: id,
                    path: &path,
                    pod_uid: &pod_uid,
                    id: &cid,
                    pid: pid as u32,
                    comm: comm.trim(),
                    at_ns: BootClock::boot_now_ns(),
                    discovered: true,
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Completes a tracked container's metadata if a source learnt it since
    /// (the kubelet writes a container's id into the pod status only after
    /// it started, so the API often knows a container later than the kernel).
    fn complete_meta(&mut self, memcg: u64) {
        let Some(t) = self.ctrs.get(memcg) else {
            return;
        };
        if t.info.name.is_some() && t.info.pod.name.is_some() {
            return;
        }
        let info = self.meta.container(&t.info.pod.uid, &t.info.id);
        if info == t.info {
            return;
        }
        let mut t = t.clone();
        t.info = info;
        if let Some(m) = self.tr.container_meta(memcg) {
            let mut m = m.clone();
            m.pod = t.pod_ref();
            m.container = t.container_ref();
            self.tr.add_container(memcg, &t.path, m);
        }
        self.ctrs.track(t);
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
    // SAFETY: glibc call without preconditions.
    unsafe { libc::malloc_trim(0) };
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
