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
//!   `oom_kill` lines for the same victims are timed too;
//! - OOM storm: `--storm` cgroups OOM-killed at once under the agent (and
//!   bpftrace): records seen, the right cgroup named, lost events.
//!
//! How a tool's programs are found: through its own file descriptors
//! (`sys::attached_progs`): oom-tracer's bpf_links name their tracepoint in
//! fdinfo (`tp_name`); bpftrace's perf events answer BPF_TASK_FD_QUERY,
//! as for `bpftool perf`. Program names cannot do it alone (the kernel keeps
//! 15 characters: both tools' exec and exit programs are `sched_process_e`);
//! each program's name and load time (after the tool's spawn) are checked
//! and written to bench.json (`programs`).
mod storm;
mod sys;
mod tool;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use sys::{Cgroups, HOOKS, MEMCG, Prog};
use tool::{Line, Proc};

/// The bpftrace script: oom-tracer's hooks, one printed line per event.
const SCRIPT: &str = include_str!("../bench.bt");
/// oom-tracer's default --alloc-step, handed to the script.
const ALLOC_STEP: u64 = 4 << 20;
/// Container limit of the latency runs and of the OOM storm.
const OOM_LIMIT: u64 = 20 << 20;
/// mkdir/attach/rmdir rounds of the cgroup churn.
const CHURN: usize = 200;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
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

impl Ctx {
    fn spawn(&self, tool: Tool) -> anyhow::Result<Proc> {
        let log = self.out.join(format!("{}.stderr", tool.name()));
        let cmd = match tool {
            Tool::OomTracer => {
                let mut c = Command::new(&self.tracer);
                c.args(["agent", "--no-cri", "--kube-api", "off"])
                    .env("OOM_TRACER_LOG", "warn");
                c
            }
            Tool::Bpftrace => {
                let p = &self.params;
                let mut c = Command::new("bpftrace");
                c.args(["-B", "line"]).arg(&self.script).args(
                    [
                        u64::from(p.memory_cgrp_id),
                        self.kubepods_id,
                        u64::from(p.kn_id_offset),
                        u64::from(p.memory_hierarchy),
                        ALLOC_STEP,
                    ]
                    .map(|v| v.to_string()),
                );
                c
            }
        };
        Proc::spawn(tool.name(), cmd, &log)
    }

    /// Waits until `p` can report, recording the startup measures.
    fn wait_ready(&mut self, tool: Tool, p: &mut Proc) -> anyhow::Result<()> {
        let ms = |l: &Line, p: &Proc| (l.mono_ns.saturating_sub(p.spawned_mono)) as f64 / 1e6;
        match tool {
            Tool::OomTracer => {
                let (_, l) =
                    p.wait_for(0, Duration::from_secs(60), |l| is_event(&l.text, "start"))?;
                self.samples.add(tool, "startup.wall_ms", ms(&l, p));
                // Printed once every program is attached.
                self.samples.add(tool, "startup.attached_ms", ms(&l, p));
                let v: Value = serde_json::from_str(&l.text)?;
                if let Some(s) = v["startup_ms"].as_f64() {
                    self.samples.add(tool, "startup.own_ms", s);
                }
            }
            Tool::Bpftrace => {
                let (i, l) = p.wait_for(0, Duration::from_secs(60), |l| {
                    l.text.starts_with("Attaching ")
                })?;
                self.samples.add(tool, "startup.wall_ms", ms(&l, p));
                let (_, l) =
                    p.wait_for(i, Duration::from_secs(30), |l| l.text.starts_with("ready "))?;
                self.samples.add(tool, "startup.attached_ms", ms(&l, p));
            }
        }
        Ok(())
    }

    /// The programs `p` attached, by hook; checks their kernel names and
    /// load times, and keeps the mapping of the first run for bench.json.
    fn programs_of(&mut self, tool: Tool, p: &Proc, first: bool) -> anyhow::Result<Vec<Prog>> {
        let until = Instant::now() + Duration::from_secs(5);
        let progs = loop {
            let v = sys::attached_progs(p.pid());
            if HOOKS.iter().all(|h| v.iter().any(|x| x.hook == *h)) || Instant::now() > until {
                break v;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let missing: Vec<_> = HOOKS
            .iter()
            .filter(|h| !progs.iter().any(|x| x.hook == **h))
            .collect();
        if !missing.is_empty() {
            let n = format!("{}: no program found on {missing:?}", tool.name());
            eprintln!("xtask: bench: {n}");
            if !self.notes.contains(&n) {
                self.notes.push(n);
            }
        }
        let ids: Vec<u32> = progs.iter().map(|x| x.id).collect();
        let stats = sys::prog_stats(&ids);
        let spawned = p
            .spawned_at
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for x in &progs {
            let st = stats.get(&x.id).cloned().unwrap_or_default();
            let after_spawn = st.loaded_at.is_some_and(|t| t >= spawned);
            if !after_spawn {
                bail!(
                    "{}: program {} ({}) on {} was not loaded after the tool started",
                    tool.name(),
                    x.id,
                    st.name,
                    x.hook
                );
            }
            if first {
                self.programs.push(json!({
                    "tool": tool.name(), "hook": x.hook, "prog_id": x.id,
                    "kernel_name": st.name, "loaded_after_spawn": after_spawn,
                }));
            }
        }
        Ok(progs)
    }

    /// A fresh container cgroup in the watched pod (`pod<uid>/<64 hex>`).
    fn container(&mut self) -> anyhow::Result<PathBuf> {
        let d = self.pod.join(sys::random_hex(32));
        self.cgroups.create(&d)?;
        Ok(d)
    }

    /// Runs `load` while tool `p` traces, recording per-hook kernel cost,
    /// the tool's CPU and peak RSS, and the exec records it printed.
    fn measure(
        &mut self,
        tool: Tool,
        p: &Proc,
        progs: &[Prog],
        storm: &str,
        load: impl FnOnce(&mut Ctx) -> anyhow::Result<Load>,
    ) -> anyhow::Result<()> {
        sys::check_interrupted()?;
        let pid = p.pid();
        let ids: Vec<u32> = progs.iter().map(|x| x.id).collect();
        let mark = p.mark();
        let before = sys::prog_stats(&ids);
        let cpu0 = sys::cpu_ms(pid);
        let stop = AtomicBool::new(false);
        let (load, rss_kib) = std::thread::scope(|s| {
            let sampler = s.spawn(|| {
                let mut max = 0f64;
                loop {
                    if let Some(r) = sys::rss_kib(pid) {
                        max = max.max(r);
                    }
                    if stop.load(Ordering::Relaxed) {
                        break max;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            let r = load(self);
            stop.store(true, Ordering::Relaxed);
            (r, sampler.join().unwrap_or(f64::NAN))
        });
        let load = load?;
        let after = sys::prog_stats(&ids);
        // oom-tracer drains its ring buffer every 100 ms: let both print the tail.
        sys::sleep(Duration::from_millis(300))?;
        let cpu1 = sys::cpu_ms(pid);
        let s = &mut self.samples;
        s.hook_deltas(tool, storm, progs, &before, &after);
        if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
            s.add(tool, format!("{storm}.cpu_ms"), c1 - c0);
            s.add(
                tool,
                format!("{storm}.cpu_pct"),
                (c1 - c0) / (load.secs * 1000.0) * 100.0,
            );
        }
        s.add(tool, format!("{storm}.rss_mib"), rss_kib / 1024.0);
        s.add(tool, format!("{storm}.secs"), load.secs);
        if let Some(n) = load.execs {
            s.add(tool, format!("{storm}.execs"), n as f64);
            s.add(tool, format!("{storm}.exec_rate"), n as f64 / load.secs);
            if let Some(cg) = &load.cgroup {
                let records = count_exec_records(tool, p, mark, cg)?;
                s.add(tool, format!("{storm}.exec_records"), records as f64);
                s.add(
                    tool,
                    format!("{storm}.records_per_exec"),
                    records as f64 / n.max(1) as f64,
                );
            }
        }
        Ok(())
    }

    /// One run of one tool: startup, idle RSS, the four storms.
    fn tool_run(&mut self, tool: Tool, first: bool) -> anyhow::Result<()> {
        sys::check_interrupted()?;
        let mut p = self.spawn(tool)?;
        self.wait_ready(tool, &mut p)?;
        let progs = self.programs_of(tool, &p, first)?;
        sys::sleep(Duration::from_secs(1))?;
        if let Some(r) = sys::rss_kib(p.pid()) {
            self.samples.add(tool, "idle.rss_mib", r / 1024.0);
        }
        let secs = self.args.exec_secs;
        let stopfile = self.out.join("exec-storm.stop");

        let cg = self.container()?;
        self.measure(tool, &p, &progs, "exec_watched", |_| {
            let (n, s) = storm::exec_storm(&cg, secs, &stopfile)?;
            Ok(Load {
                execs: Some(n),
                secs: s,
                cgroup: Some(cg.clone()),
            })
        })?;
        self.cgroups.remove(&cg)?;

        let cg = self.own.join(format!("exec-{}", sys::random_hex(6)));
        self.cgroups.create(&cg)?;
        self.measure(tool, &p, &progs, "exec_unwatched", |_| {
            let (n, s) = storm::exec_storm(&cg, secs, &stopfile)?;
            Ok(Load {
                execs: Some(n),
                secs: s,
                cgroup: Some(cg.clone()),
            })
        })?;
        self.cgroups.remove(&cg)?;

        let cg = self.container()?;
        self.measure(tool, &p, &progs, "alloc_watched", |ctx| {
            let t = Instant::now();
            storm::alloc_storm(&cg, &ctx.stress)?;
            Ok(Load {
                execs: None,
                secs: t.elapsed().as_secs_f64(),
                cgroup: None,
            })
        })?;
        self.cgroups.remove(&cg)?;

        self.measure(tool, &p, &progs, "cgroup_churn", |ctx| {
            let t = Instant::now();
            storm::cgroup_churn(&ctx.pod, CHURN)?;
            Ok(Load {
                execs: None,
                secs: t.elapsed().as_secs_f64(),
                cgroup: None,
            })
        })?;

        let lines = stop_tool(tool, p)?;
        self.samples
            .add(tool, "lost_events", lost_events(tool, &lines)? as f64);
        Ok(())
    }

    /// OOM kill → stdout latency: `--kills` kills under `oom-tracer run`,
    /// per run; bpftrace (`bt`, already running) times its own lines for
    /// the same victims.
    fn latency(&mut self, bt: &Proc) -> anyhow::Result<()> {
        let parent = sys::cgroup_path(&self.own);
        let kills = self.args.kills.max(1);
        for r in 0..self.args.runs {
            eprintln!(
                "xtask: bench: OOM latency, run {}/{}: {kills} kills",
                r + 1,
                self.args.runs
            );
            let mark = bt.mark();
            let mut c = Command::new(&self.tracer);
            c.args(["run", "--cgroup-parent", &parent])
                .args(["--memory-limit", "20Mi", "--restart-policy", "Always"])
                .args(["--max-restarts", &(kills - 1).to_string()])
                .args(["--backoff-initial", "100ms", "--backoff-max", "100ms", "--"])
                .arg(&self.stress)
                .args(["--step", "5Mi", "--interval", "1ms"])
                .env("OOM_TRACER_LOG", "warn");
            let mut p = Proc::spawn("oom-tracer run", c, &self.out.join("oom-tracer-run.stderr"))?;
            p.wait_for(0, Duration::from_secs(120), |l| is_event(&l.text, "stop"))?;
            let lines = p.finish(None, Duration::from_secs(10))?;
            let mut lat = Vec::new();
            let mut pids = BTreeSet::new();
            for l in &lines {
                if !is_event(&l.text, "oom_kill") {
                    continue;
                }
                let v: Value = serde_json::from_str(&l.text)?;
                let t = v["time"]
                    .as_str()
                    .and_then(sys::parse_rfc3339_ns)
                    .context("oom_kill without a time")?;
                lat.push((l.real_ns as f64 - t as f64) / 1e6);
                if let Some(pid) = v["victim"]["pid"].as_u64() {
                    pids.insert(pid);
                }
            }
            sys::sleep(Duration::from_millis(300))?;
            let bt_lat: Vec<f64> = bt.with_lines(mark, |ls| {
                ls.iter()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.text.split_whitespace().collect();
                        if f.first() != Some(&"oom_kill") {
                            return None;
                        }
                        let ns: u64 = f.get(1)?.parse().ok()?;
                        let pid: u64 = f.get(2)?.parse().ok()?;
                        pids.contains(&pid)
                            .then(|| (l.mono_ns as f64 - ns as f64) / 1e6)
                    })
                    .collect()
            });
            for (tool, mut v) in [(Tool::OomTracer, lat), (Tool::Bpftrace, bt_lat)] {
                self.samples.add(tool, "latency.kills", v.len() as f64);
                self.samples
                    .add(tool, "latency.p50_ms", percentile(&mut v, 50.0));
                self.samples
                    .add(tool, "latency.p99_ms", percentile(&mut v, 99.0));
                self.latencies.entry(tool).or_default().extend(v);
            }
        }
        Ok(())
    }

    /// `--storm` container cgroups OOM-killed at once while the agent and
    /// bpftrace (`bt`) trace.
    fn oom_storm(&mut self, bt: &Proc, bt_progs: &[Prog]) -> anyhow::Result<()> {
        let n = self.args.storm.max(1);
        let burstable = self.pod.parent().context("pod parent")?.to_owned();
        for r in 0..self.args.runs {
            eprintln!(
                "xtask: bench: OOM storm, run {}/{}: {n} cgroups",
                r + 1,
                self.args.runs
            );
            let pod = burstable.join(format!("pod{}", sys::uuid()));
            let mut cgs = Vec::with_capacity(n);
            for _ in 0..n {
                let d = pod.join(sys::random_hex(32));
                self.cgroups.create(&d)?;
                Cgroups::set_limit(&d, OOM_LIMIT)?;
                cgs.push(d);
            }
            let mut agent = self.spawn(Tool::OomTracer)?;
            agent.wait_for(0, Duration::from_secs(60), |l| is_event(&l.text, "start"))?;
            // The agent watches kubepods right after its start record.
            sys::sleep(Duration::from_millis(500))?;
            let agent_progs = sys::attached_progs(agent.pid());
            let ids: Vec<u32> = agent_progs.iter().chain(bt_progs).map(|x| x.id).collect();
            let mark = bt.mark();
            let mut armed = storm::arm(&self.stress, &cgs)?;
            let before = sys::prog_stats(&ids);
            let (killed, secs) = storm::release(&mut armed, Duration::from_secs(60))?;
            sys::sleep(Duration::from_millis(500))?;
            let after = sys::prog_stats(&ids);
            let s = &mut self.samples;
            s.hook_deltas(Tool::OomTracer, "oom_storm", &agent_progs, &before, &after);
            s.hook_deltas(Tool::Bpftrace, "oom_storm", bt_progs, &before, &after);
            let by_pid: BTreeMap<u64, PathBuf> = armed
                .iter()
                .map(|a| (u64::from(a.child.id()), a.cgroup.clone()))
                .collect();
            drop(armed);
            let lines = stop_tool(Tool::OomTracer, agent)?;
            let (mut seen, mut right) = (BTreeSet::new(), 0);
            for l in &lines {
                if !is_event(&l.text, "oom_kill") {
                    continue;
                }
                let v: Value = serde_json::from_str(&l.text)?;
                let Some(cg) = v["victim"]["pid"].as_u64().and_then(|p| by_pid.get(&p)) else {
                    continue;
                };
                seen.insert(v["victim"]["pid"].as_u64().unwrap_or(0));
                let path = sys::cgroup_path(cg);
                if v["victim_cgroup"] == path.as_str() && v["memcg"]["path"] == path.as_str() {
                    right += 1;
                }
            }
            let agent_lost = lost_events(Tool::OomTracer, &lines)?;
            let ids: BTreeMap<PathBuf, u64> = cgs
                .iter()
                .filter_map(|d| Some((d.clone(), sys::cgroup_id(d).ok()?)))
                .collect();
            let (bt_seen, bt_right, bt_lost) = bt.with_lines(mark, |ls| {
                let (mut seen, mut right, mut lost) = (BTreeSet::new(), 0, 0);
                for l in ls {
                    lost += bt_lost_line(&l.text);
                    let f: Vec<&str> = l.text.split_whitespace().collect();
                    if f.first() != Some(&"oom_kill") {
                        continue;
                    }
                    let Some(pid) = f.get(2).and_then(|p| p.parse::<u64>().ok()) else {
                        continue;
                    };
                    let Some(cg) = by_pid.get(&pid) else { continue };
                    seen.insert(pid);
                    let id = f.last().and_then(|x| x.parse::<u64>().ok());
                    if id.is_some() && id == ids.get(cg).copied() {
                        right += 1;
                    }
                }
                (seen.len(), right, lost)
            });
            self.cgroups.remove(&pod)?;
            let s = &mut self.samples;
            for (tool, seen, right, lost) in [
                (Tool::OomTracer, seen.len(), right, agent_lost),
                (Tool::Bpftrace, bt_seen, bt_right, bt_lost),
            ] {
                s.add(tool, "oom_storm.killed", killed as f64);
                s.add(tool, "oom_storm.records", seen as f64);
                s.add(tool, "oom_storm.right_cgroup", right as f64);
                s.add(tool, "oom_storm.lost", lost as f64);
                s.add(tool, "oom_storm.secs", secs);
            }
        }
        Ok(())
    }
}

/// Exec records of tool `p` since `mark` for processes in `cg`.
fn count_exec_records(tool: Tool, p: &Proc, mark: usize, cg: &Path) -> anyhow::Result<u64> {
    let path = sys::cgroup_path(cg);
    let id = sys::cgroup_id(cg)?.to_string();
    Ok(p.with_lines(mark, |ls| {
        ls.iter()
            .filter(|l| match tool {
                Tool::OomTracer => {
                    is_event(&l.text, "exec")
                        && serde_json::from_str::<Value>(&l.text)
                            .is_ok_and(|v| v["cgroup"] == path.as_str())
                }
                Tool::Bpftrace => {
                    l.text.starts_with("exec ")
                        && l.text.split_whitespace().last() == Some(id.as_str())
                }
            })
            .count() as u64
    }))
}

/// bpftrace's "Lost N events" line, as N.
fn bt_lost_line(text: &str) -> u64 {
    text.strip_prefix("Lost ")
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Stops a tool (oom-tracer: SIGTERM, then its stop record; bpftrace:
/// SIGINT, as Ctrl-C) and returns what it printed.
fn stop_tool(tool: Tool, p: Proc) -> anyhow::Result<Vec<Line>> {
    let sig = match tool {
        Tool::OomTracer => libc::SIGTERM,
        Tool::Bpftrace => libc::SIGINT,
    };
    p.finish(Some(sig), Duration::from_secs(15))
}

/// Events the tool could not hand to userspace: oom-tracer's stop record
/// `lost_events`, bpftrace's "Lost N events" lines.
fn lost_events(tool: Tool, lines: &[Line]) -> anyhow::Result<u64> {
    Ok(match tool {
        Tool::OomTracer => {
            let stop = lines
                .iter()
                .rev()
                .find(|l| is_event(&l.text, "stop"))
                .context("oom-tracer printed no stop record")?;
            let v: Value = serde_json::from_str(&stop.text)?;
            v["lost_events"].as_u64().unwrap_or(0)
        }
        Tool::Bpftrace => lines.iter().map(|l| bt_lost_line(&l.text)).sum(),
    })
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
    eprintln!(
        "xtask: bench: bpftrace is not installed; the benchmark compares oom-tracer with it: installing Debian's package (apt-get install -y bpftrace)"
    );
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "bpftrace"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        eprintln!(
            "xtask: bench: apt-get install failed; updating the package lists and trying again"
        );
        let _ = Command::new("apt-get").arg("update").status();
        if !install() {
            bail!(
                "could not install bpftrace with apt-get: install bpftrace (Debian bookworm ships 0.17) and rerun `cargo xtask bench`"
            );
        }
    }
    version().context("bpftrace was installed but `bpftrace --version` fails")
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_default();
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "memory_gib": (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cgroup": "v1 (memory hierarchy at /sys/fs/cgroup/memory)",
    })
}

pub fn bench(root: &Path, args: BenchArgs) -> anyhow::Result<()> {
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
    for r in 0..args.runs {
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

    // OOM phases: bpftrace traces alongside oom-tracer.
    let mut bt = ctx.spawn(Tool::Bpftrace)?;
    bt.wait_for(0, Duration::from_secs(60), |l| l.text.starts_with("ready "))?;
    let bt_progs = ctx.programs_of(Tool::Bpftrace, &bt, false)?;
    let t = Instant::now();
    ctx.latency(&bt)?;
    phases.insert("oom_latency_s".into(), t.elapsed().as_secs_f64().into());
    let t = Instant::now();
    ctx.oom_storm(&bt, &bt_progs)?;
    phases.insert("oom_storm_s".into(), t.elapsed().as_secs_f64().into());
    let bt_lines = stop_tool(Tool::Bpftrace, bt)?;
    let bt_lost = lost_events(Tool::Bpftrace, &bt_lines)?;
    drop(bt_lines);

    let elapsed = started.elapsed().as_secs_f64();
    let (table, mut report) = ctx.report(elapsed);
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

/// A median for the table: `-` when absent.
fn fmt(v: Option<f64>, dec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.dec$}"))
}

fn fmt_unit(v: Option<f64>, dec: usize, unit: &str) -> String {
    v.map_or("-".into(), |v| format!("{v:.dec$}{unit}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// What the numbers mean and where the comparison is not like for like.
const NOTES: &str = "\
Notes:
- ratio = oom-tracer / bpftrace: below 1, oom-tracer costs less (or is faster).
- Same filters in the kernel: the bpftrace script (xtask/src/bench.bt) walks the \
task's memory cgroup ancestry (css->parent, 12 levels) against the kubepods cgroup's \
id as the agent does, filters rss_stat on curr==1 && member==MM_ANONPAGES with a \
per-tgid 4Mi step map, keeps cgroup_* of the memory hierarchy only and \
cgroup_attach_task into the watched id only. bpftrace's `cgroup` builtin is the \
cgroup v2 id, always 1 on this cgroup v1 machine, so it cannot filter. Where \
bpftrace cannot express the filter it prints unfiltered: signal_generate (the \
tracepoint has the target's pid, not its task: every SIGKILL is printed; the agent \
also records every SIGKILL) and mark_victim (every memcg OOM kill, in both tools). \
bpftrace's oom_kill line names the trigger's memory cgroup id; the victim's cannot be \
read from the tracepoint. In the OOM storm each victim is its own trigger.
- Printing: bpftrace's printf writes to a perf buffer that wakes its reader on every \
event: one IRQ-work interrupt per line (IWI in /proc/interrupts), taken while the \
program runs. That is where bpftrace's printing hooks spend their tens of µs on this \
VM: a printf-only exec probe measures about 30 µs per run, a map update about 1 µs. \
oom-tracer's bulk records go to a ring buffer without wake-up, drained every 100 ms; \
OOM records wake the reader.
- oom-tracer's exec, exit, signal_generate and mark_victim are tp_btf programs. \
bpftrace 0.17 attaches classic tracepoints, where the kernel fills the trace record \
before the program runs, outside run_time_ns: for those four hooks bpftrace's real \
per-event cost is higher than shown. rss_stat and cgroup_* are classic tracepoints \
in both tools. oom-tracer reads their fields with bpf_probe_read_kernel; bpftrace \
loads them directly from the context, which is why its filtered-out rss_stat and \
cgroup_attach_task runs are cheaper.
- The tools run one at a time for startup, idle RSS and the storms, with the \
order alternating between runs. In the OOM phases bpftrace runs alongside \
oom-tracer: `oom-tracer run` drives the latency kills, and the agent traces the \
storm. Latency: oom-tracer's is CLOCK_REALTIME at the read minus the record's \
`time`; bpftrace's is CLOCK_MONOTONIC at the read minus its `nsecs`.
- CPU comes from /proc/<pid>/stat in 10 ms ticks, so values under 1 % are rough. The \
machine's other work runs too, and both tools also trace any other container under \
kubepods.
";

/// Storms for the per-hook table, with their labels.
const STORMS: [(&str, &str); 5] = [
    ("exec_watched", "fork/exec storm, watched"),
    ("exec_unwatched", "fork/exec storm, unwatched"),
    ("alloc_watched", "allocation storm, watched"),
    ("cgroup_churn", "cgroup churn, watched pod"),
    ("oom_storm", "OOM storm"),
];
/// Hooks that ran fewer times than this in a storm are left out of the
/// markdown table (their ns/run is a handful of cold runs); bench.json has them.
const MIN_RUNS: f64 = 50.0;

impl Ctx {
    fn report(&self, elapsed: f64) -> (String, Value) {
        let s = &self.samples;
        let a = &self.args;
        let mut md = String::new();
        let mut summary = Vec::new();
        let mut row = |md: &mut String, label: &str, key: &str, unit: &str, dec: usize| {
            let (o, b) = (
                s.median(Tool::OomTracer, key),
                s.median(Tool::Bpftrace, key),
            );
            let r = ratio(o, b);
            md.push_str(&format!(
                "| {label} | {} | {} | {} |\n",
                fmt_unit(o, dec, unit),
                fmt_unit(b, dec, unit),
                fmt(r, 2)
            ));
            summary.push(json!({
                "measure": label, "metric": key, "unit": unit.trim(),
                "oom-tracer": o, "bpftrace": b, "ratio": r,
            }));
        };
        md.push_str(&format!(
            "Medians of {} runs; ratio = oom-tracer / bpftrace.\n\n",
            a.runs
        ));
        md.push_str("| measure | oom-tracer | bpftrace | ratio |\n|---|---|---|---|\n");
        row(
            &mut md,
            "startup: spawn → first record possible (`start` line / `Attaching 10 probes...`)",
            "startup.wall_ms",
            " ms",
            0,
        );
        row(
            &mut md,
            "startup: spawn → every probe attached (`start` line / BEGIN probe's line)",
            "startup.attached_ms",
            " ms",
            0,
        );
        row(
            &mut md,
            "startup: oom-tracer's own `startup_ms` (BTF offsets, load, attach)",
            "startup.own_ms",
            " ms",
            0,
        );
        row(
            &mut md,
            "idle RSS, 1 s after start",
            "idle.rss_mib",
            " MiB",
            1,
        );
        for (storm, label) in [
            ("exec_watched", "exec storm, watched"),
            ("exec_unwatched", "exec storm, unwatched"),
        ] {
            row(
                &mut md,
                &format!(
                    "{label}: execs/s achieved (2 × `/bin/true` loop, {} s)",
                    a.exec_secs
                ),
                &format!("{storm}.exec_rate"),
                "",
                0,
            );
            row(
                &mut md,
                &format!("{label}: tool CPU, user+sys, % of one CPU"),
                &format!("{storm}.cpu_pct"),
                " %",
                1,
            );
            row(
                &mut md,
                &format!("{label}: tool RSS, peak"),
                &format!("{storm}.rss_mib"),
                " MiB",
                1,
            );
            row(
                &mut md,
                &format!("{label}: exec lines printed per exec"),
                &format!("{storm}.records_per_exec"),
                "",
                2,
            );
        }
        row(
            &mut md,
            &format!("OOM kill → line on stdout, p50 ({} kills per run)", a.kills),
            "latency.p50_ms",
            " ms",
            2,
        );
        row(
            &mut md,
            &format!("OOM kill → line on stdout, p99 ({} kills per run)", a.kills),
            "latency.p99_ms",
            " ms",
            2,
        );
        row(
            &mut md,
            &format!(
                "OOM storm ({} cgroups at once): processes OOM-killed",
                a.storm
            ),
            "oom_storm.killed",
            "",
            0,
        );
        row(
            &mut md,
            "OOM storm: oom_kill lines for them",
            "oom_storm.records",
            "",
            0,
        );
        row(
            &mut md,
            "OOM storm: lines naming the victim's cgroup",
            "oom_storm.right_cgroup",
            "",
            0,
        );
        row(&mut md, "OOM storm: lost events", "oom_storm.lost", "", 0);
        row(
            &mut md,
            "storms: lost events, per tool run",
            "lost_events",
            "",
            0,
        );

        md.push_str("\nKernel cost per hook, ns per run (run_time_ns / run_cnt, kernel.bpf_stats_enabled):\n\n");
        md.push_str("| storm | hook | oom-tracer | bpftrace | ratio | runs per storm (oom-tracer / bpftrace) |\n|---|---|---|---|---|---|\n");
        let mut hooks = Vec::new();
        for (storm, label) in STORMS {
            for hook in HOOKS {
                let ns = |t| s.median(t, &format!("hook.{storm}.{hook}.ns"));
                let runs = |t| s.median(t, &format!("hook.{storm}.{hook}.runs"));
                let (o, b) = (ns(Tool::OomTracer), ns(Tool::Bpftrace));
                if o.is_none() && b.is_none() {
                    continue;
                }
                let r = ratio(o, b);
                // mark_victim runs once per kill: shown for the OOM storm.
                let shown = TOOLS
                    .iter()
                    .all(|&t| runs(t).is_some_and(|n| n >= MIN_RUNS))
                    || (storm == "oom_storm" && hook == "mark_victim");
                hooks.push(json!({
                    "storm": storm, "hook": hook,
                    "oom-tracer": {"ns_per_run": o, "runs": runs(Tool::OomTracer)},
                    "bpftrace": {"ns_per_run": b, "runs": runs(Tool::Bpftrace)},
                    "ratio": r,
                    "in_table": shown,
                }));
                if !shown {
                    continue;
                }
                md.push_str(&format!(
                    "| {label} | {hook} | {} | {} | {} | {} / {} |\n",
                    fmt(o, 0),
                    fmt(b, 0),
                    fmt(r, 2),
                    fmt(runs(Tool::OomTracer), 0),
                    fmt(runs(Tool::Bpftrace), 0)
                ));
            }
        }
        md.push_str(&format!(
            "\nHooks that ran fewer than {MIN_RUNS} times in a storm are left out; bench.json has them.\n"
        ));
        let mut pooled = serde_json::Map::new();
        for (t, v) in &self.latencies {
            let mut v = v.clone();
            pooled.insert(
                t.name().into(),
                json!({"n": v.len(), "p50": percentile(&mut v, 50.0), "p99": percentile(&mut v, 99.0)}),
            );
        }
        md.push('\n');
        md.push_str(NOTES);
        for n in &self.notes {
            md.push_str(&format!("- {n}\n"));
        }
        let mut samples = serde_json::Map::new();
        for ((t, k), v) in &s.0 {
            samples
                .entry(t.name())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|m| m.insert(k.clone(), json!(v)));
        }
        let report = json!({
            "command": format!(
                "cargo xtask bench --runs {} --storm {} --kills {} --exec-secs {}",
                a.runs, a.storm, a.kills, a.exec_secs
            ),
            "machine": machine(),
            "elapsed_s": elapsed,
            "summary": summary,
            "hook_cost": hooks,
            "oom_latency_pooled_ms": pooled,
            "programs": self.programs,
            "notes": self.notes,
            "samples": samples,
        });
        (md, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
