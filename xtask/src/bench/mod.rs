//! `cargo xtask bench`: oom-tracer side by side with bpftrace running the
//! same eight tracepoints (`xtask/src/bench.bt`), as medians over `--runs`
//! repetitions. Prints a markdown table and writes every sample and median
//! to target/bench/bench.json. Needs root: it loads BPF programs, creates
//! memory cgroups and OOM-kills processes in them.
//!
//! What is measured, for both tools unless said otherwise:
//! - startup: wall time from spawn until a record can be seen (oom-tracer's
//!   `start` line, bpftrace's "Attaching N probes..."), oom-tracer's own
//!   `startup_ms`, bpftrace's time until its BEGIN probe ran;
//! - idle RSS, one second after startup;
//! - storms, each with the kernel's per-program run time and run count
//!   (kernel.bpf_stats_enabled, held on for the whole bench), the tool's CPU
//!   (utime+stime from /proc/<pid>/stat) and its peak RSS:
//!   - `exec_watched`: two `while :; do /bin/true; done` loops for
//!     `--exec-secs` in a Kubernetes-like container cgroup under kubepods
//!     (watched by the agent and by the script's filter);
//!   - `exec_unwatched`: the same in a cgroup outside kubepods;
//!   - `alloc_watched`: stress ramps to 400Mi in 4Mi steps in a watched container;
//!   - `cgroup_churn`: 200 × (mkdir, two attaches, rmdir) under the watched pod;
//! - OOM latency: `--kills` OOM kills under `oom-tracer run`, kill → record
//!   on stdout, p50/p99; bpftrace runs at the same time and its
//!   `oom_kill` lines for the same victims are timed too (the runs
//!   alternate which tool attaches first: at a kill the one attached first
//!   is woken first); then one more run
//!   traced from outside (`breakdown.rs`, xtask/src/latency.bt) splits that time
//!   into the kernel's wake-up, the tracer's work and the pipe;
//! - OOM storm: `--storm` cgroups OOM-killed at once under the agent (and
//!   bpftrace): records seen, the right cgroup named, lost events;
//! - OOM kills with the runtime hung (`hung.rs`, oom-tracer only):
//!   `--hung-kills` new containers OOM-killed at once under the agent whose
//!   CRI socket accepts and never answers: kill → stdout p50/p99/max;
//! - the node bench (`node.rs`, oom-tracer only): pods on the test
//!   containerd (110 from 8 CPUs on, in proportion below), a tenth of them
//!   crash-looping on OOM kills, a churn of pods,
//!   5,000 pods served by the API stand-in, for `--node-secs`: the agent's
//!   RSS and CPU over time, records per second, lost records, and whether
//!   every kill and restart named the right pod, container and restart count;
//! - call sites on and off (`callsites.rs`, oom-tracer only): rss_stat and
//!   mark_victim per run, a growth step's stack, the agent's idle RSS.
//!
//! How a tool's programs are found: through its own file descriptors
//! (`sys::attached_progs`): oom-tracer's bpf_links name their tracepoint in
//! fdinfo (`tp_name`); bpftrace's perf events answer BPF_TASK_FD_QUERY,
//! as for `bpftool perf`. Program names cannot do it alone (the kernel keeps
//! 15 characters: both tools' exec and exit programs are `sched_process_e`);
//! each program's name and load time (after the tool's spawn) are checked
//! and written to bench.json (`programs`).
mod breakdown;
mod callsites;
mod hung;
mod measure;
mod node;
mod oom;
mod render;
mod storm;
mod sys;
mod tool;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use measure::{lost_events, stop_tool};
use serde_json::Value;
use sys::{Cgroups, MEMCG, Prog};

/// The bpftrace script: oom-tracer's hooks, one printed line per event.
const SCRIPT: &str = include_str!("../bench.bt");
/// oom-tracer's default --alloc-step, handed to the script.
const ALLOC_STEP: u64 = 4 << 20;
/// Container limit of the latency runs and of the OOM storm.
const OOM_LIMIT: u64 = 20 << 20;
/// mkdir/attach/rmdir rounds of the cgroup churn.
const CHURN: usize = 200;

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// Repetitions of each measure; the tables show medians.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Memory cgroups OOM-killed at once in the OOM storm.
    #[arg(long, default_value_t = 100)]
    pub storm: usize,
    /// OOM kills per latency run (`oom-tracer run --max-restarts KILLS-1`).
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Length of each exec storm, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub exec_secs: f64,
    /// Seconds under load of the node bench (pods on the test containerd,
    /// as many as the machine's CPUs carry); 0 skips it.
    #[arg(long, default_value_t = 120)]
    pub node_secs: u64,
    /// New containers OOM-killed at once under the agent with its
    /// container runtime hung (a CRI socket that accepts and never
    /// answers); 0 skips it.
    #[arg(long, default_value_t = 10)]
    pub hung_kills: usize,
    /// Run only these parts (repeatable); all of them by default. E.g.
    /// `--only latency` for the OOM kill → stdout latency alone.
    #[arg(long, value_enum)]
    pub only: Vec<Phase>,
}

/// The parts of the bench, for `--only`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Startup, idle RSS, the exec, allocation and cgroup storms.
    Tools,
    /// `oom-tracer run`'s idle RSS.
    Idle,
    /// OOM kill → stdout latency, beside bpftrace.
    Latency,
    /// The OOM storm, beside bpftrace.
    Storm,
    /// The latency broken down from outside.
    Breakdown,
    /// OOM kills with the container runtime hung.
    Hung,
    /// The node bench on the test containerd.
    Node,
    /// Call sites on and off: rss_stat, mark_victim, a growth step, RSS.
    Callsites,
}

impl BenchArgs {
    fn wants(&self, p: Phase) -> bool {
        self.only.is_empty() || self.only.contains(&p)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tool {
    OomTracer,
    Bpftrace,
}

const TOOLS: [Tool; 2] = [Tool::OomTracer, Tool::Bpftrace];

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::OomTracer => "oom-tracer",
            Tool::Bpftrace => "bpftrace",
        }
    }
}

/// Samples per tool and metric, one per run.
#[derive(Default)]
struct Samples(BTreeMap<(Tool, String), Vec<f64>>);

impl Samples {
    fn add(&mut self, t: Tool, k: impl Into<String>, v: f64) {
        if v.is_finite() {
            self.0.entry((t, k.into())).or_default().push(v);
        }
    }

    /// Per-hook ns/run and runs between two snapshots of the kernel's statistics.
    fn hook_deltas(
        &mut self,
        tool: Tool,
        storm: &str,
        progs: &[Prog],
        before: &BTreeMap<u32, sys::ProgStat>,
        after: &BTreeMap<u32, sys::ProgStat>,
    ) {
        for x in progs {
            let (Some(b), Some(a)) = (before.get(&x.id), after.get(&x.id)) else {
                continue;
            };
            let runs = a.run_count.saturating_sub(b.run_count);
            let ns = a.run_time_ns.saturating_sub(b.run_time_ns);
            self.add(tool, format!("hook.{storm}.{}.runs", x.hook), runs as f64);
            if runs > 0 {
                self.add(
                    tool,
                    format!("hook.{storm}.{}.ns", x.hook),
                    ns as f64 / runs as f64,
                );
            }
        }
    }

    fn median(&self, t: Tool, k: &str) -> Option<f64> {
        let v = self.0.get(&(t, k.to_owned()))?;
        let m = median(&mut v.clone());
        m.is_finite().then_some(m)
    }
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 50.0)
}

/// Linear-interpolated percentile.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let r = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (r - lo as f64)
}

/// What a load reports back to `measure`.
struct Load {
    execs: Option<u64>,
    secs: f64,
    /// The cgroup whose exec records are counted.
    cgroup: Option<PathBuf>,
}

struct Ctx {
    args: BenchArgs,
    tracer: PathBuf,
    stress: PathBuf,
    out: PathBuf,
    script: PathBuf,
    params: sys::KernelParams,
    kubepods_id: u64,
    /// kubepods/burstable/pod<uid>: watched by the agent and the script.
    pod: PathBuf,
    /// xtask-bench-<pid>: watched by neither.
    own: PathBuf,
    cgroups: Cgroups,
    samples: Samples,
    /// Pooled OOM latencies of all runs, ms.
    latencies: BTreeMap<Tool, Vec<f64>>,
    programs: Vec<Value>,
    notes: Vec<String>,
}

fn is_event(text: &str, ev: &str) -> bool {
    text.contains(&format!("\"event\":\"{ev}\""))
}

/// bpftrace's version; installs Debian's package when it is missing.
fn ensure_bpftrace() -> anyhow::Result<String> {
    let version = || {
        Command::new("bpftrace")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(v) = version() {
        return Ok(v);
    }
    crate::apt_install(&["bpftrace"], "the benchmark compares oom-tracer with it")
        .context("install bpftrace (Debian bookworm ships 0.17) and rerun `cargo xtask bench`")?;
    version().context("bpftrace was installed but `bpftrace --version` fails")
}

pub(crate) fn bench(root: &Path, args: BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let args = BenchArgs {
        runs: args.runs.max(1),
        ..args
    };
    if !Path::new(MEMCG).join("memory.limit_in_bytes").exists() {
        bail!(
            "the benchmark creates cgroup v1 memory cgroups under {MEMCG}, which this machine does not have"
        );
    }
    let bpftrace_version = ensure_bpftrace()?;
    sys::catch_interrupts();
    let params = sys::kernel_params()?;
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    for f in [
        "oom-tracer.stderr",
        "bpftrace.stderr",
        "oom-tracer-run.stderr",
    ] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let script = out.join("bench.bt");
    std::fs::write(&script, SCRIPT)?;
    // Per-program run time and count, for every program, until we exit.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling kernel.bpf_stats_enabled")?;

    let kubepods = Path::new(MEMCG).join("kubepods");
    let pod = kubepods
        .join("burstable")
        .join(format!("pod{}", sys::uuid()));
    let own = Path::new(MEMCG).join(format!("xtask-bench-{}", std::process::id()));
    let mut cgroups = Cgroups::default();
    // kubepods/burstable are created if absent (and then removed at the end).
    cgroups.create(&pod)?;
    cgroups.create(&own)?;
    let mut ctx = Ctx {
        tracer: root.join("target/release/oom-tracer"),
        stress: root.join("target/release/stress"),
        out: out.clone(),
        script,
        kubepods_id: sys::cgroup_id(&kubepods)?,
        params,
        pod,
        own,
        cgroups,
        samples: Samples::default(),
        latencies: BTreeMap::new(),
        programs: Vec::new(),
        notes: Vec::new(),
        args: args.clone(),
    };

    let mut phases = serde_json::Map::new();
    let t = Instant::now();
    let tool_runs = if args.wants(Phase::Tools) {
        args.runs
    } else {
        0
    };
    for r in 0..tool_runs {
        // Alternate which tool goes first.
        let order = if r % 2 == 0 {
            TOOLS
        } else {
            [Tool::Bpftrace, Tool::OomTracer]
        };
        for tool in order {
            eprintln!(
                "xtask: bench: run {}/{}: {} (startup, idle, exec storms, allocation storm, cgroup churn)",
                r + 1,
                args.runs,
                tool.name()
            );
            ctx.tool_run(tool, r == 0)?;
        }
    }

    phases.insert("tool_runs_s".into(), t.elapsed().as_secs_f64().into());
    if args.wants(Phase::Idle) {
        eprintln!("xtask: bench: oom-tracer run, idle RSS");
        ctx.run_idle_rss()?;
    }

    // OOM phases: bpftrace traces alongside oom-tracer.
    let mut bt_lost = 0;
    if args.wants(Phase::Latency) {
        let t = Instant::now();
        bt_lost += ctx.latency()?;
        phases.insert("oom_latency_s".into(), t.elapsed().as_secs_f64().into());
    }
    if args.wants(Phase::Storm) {
        let mut bt = ctx.spawn(Tool::Bpftrace)?;
        bt.wait_for(0, Duration::from_secs(60), |l| l.text.starts_with("ready "))?;
        let bt_progs = ctx.programs_of(Tool::Bpftrace, &bt, false)?;
        let t = Instant::now();
        ctx.oom_storm(&bt, &bt_progs)?;
        phases.insert("oom_storm_s".into(), t.elapsed().as_secs_f64().into());
        let bt_lines = stop_tool(Tool::Bpftrace, bt)?;
        bt_lost += lost_events(Tool::Bpftrace, &bt_lines)?;
    }

    let breakdown = if args.wants(Phase::Breakdown) {
        let t = Instant::now();
        let b = ctx.latency_breakdown()?;
        phases.insert(
            "latency_breakdown_s".into(),
            t.elapsed().as_secs_f64().into(),
        );
        Some(b)
    } else {
        None
    };

    if args.wants(Phase::Hung) {
        let t = Instant::now();
        ctx.hung_runtime()?;
        phases.insert("hung_runtime_s".into(), t.elapsed().as_secs_f64().into());
    }

    let callsites = if args.wants(Phase::Callsites) {
        let t = Instant::now();
        let c = ctx.callsites()?;
        phases.insert("callsites_s".into(), t.elapsed().as_secs_f64().into());
        Some(c)
    } else {
        None
    };

    let node = if args.node_secs > 0 && args.wants(Phase::Node) {
        let t = Instant::now();
        let r = node::run(root, args.node_secs)?;
        phases.insert("node_bench_s".into(), t.elapsed().as_secs_f64().into());
        Some(r)
    } else {
        None
    };

    let elapsed = started.elapsed().as_secs_f64();
    let (mut table, mut report) = ctx.report(elapsed);
    if let Some(breakdown) = breakdown {
        table.push_str(&breakdown::render(&breakdown));
        report["latency_breakdown"] = breakdown;
    }
    if let Some(c) = callsites {
        table.push_str(&callsites::render(&c, args.runs));
        report["callsites"] = c;
    }
    if let Some(node) = node {
        table.push_str(&node::render(&node));
        report["node"] = node;
    }
    report["bpftrace_version"] = bpftrace_version.into();
    report["phases"] = phases.into();
    report["bpftrace_lost_events_oom_phases"] = bt_lost.into();
    println!("{table}");
    let path = out.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.join("bench.md"), &table)?;
    eprintln!(
        "xtask: bench: wrote {} and bench.md ({elapsed:.0} s)",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{measure::bt_lost_line, *};

    #[test]
    fn record_times_parse_to_epoch_ns() {
        assert_eq!(
            sys::parse_rfc3339_ns("2026-11-27T18:56:28.707907Z"),
            Some(1_795_805_788_707_907_000)
        );
        assert_eq!(
            sys::parse_rfc3339_ns("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000_000)
        );
        assert_eq!(sys::parse_rfc3339_ns("2026-11-27 18:56:28"), None);
    }

    #[test]
    fn percentiles_interpolate() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&mut v), 2.5);
        assert_eq!(percentile(&mut v, 100.0), 4.0);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn bpftrace_lost_lines() {
        assert_eq!(bt_lost_line("Lost 17 events"), 17);
        assert_eq!(bt_lost_line("exec 1 2 3 true 4"), 0);
    }

    #[test]
    fn cgroup_paths_are_relative_to_the_hierarchy() {
        assert_eq!(
            sys::cgroup_path(&Path::new(MEMCG).join("kubepods/burstable/podx/abc")),
            "/kubepods/burstable/podx/abc"
        );
    }

    #[test]
    fn the_script_takes_five_parameters() {
        for p in ["$1", "$2", "$3", "$4", "$5"] {
            assert!(SCRIPT.contains(p), "{p}");
        }
        assert!(!SCRIPT.contains("$6"));
    }
}
