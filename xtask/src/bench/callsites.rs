//! What call sites cost (docs/callsites.md): the agent with call sites on
//! and off (`--callsites false`), alternating which goes first between
//! runs. Per run and setting, one agent:
//! - its RSS 1 s after its `start` record (kallsyms is read before it);
//! - `ALLOC_STORMS` allocation storms (stress ramps to 400Mi in 4Mi steps
//!   in a watched container): rss_stat's run time and run count, and the
//!   growth steps (`alloc` records of kind `anon` in that container);
//! - `KILLS` containers OOM-killed at once: mark_victim's (and
//!   mark_victim_tasks') run time and count.
//!
//! A growth step's stack costs (rss_stat's total run time with call sites
//! on − off) / the steps, per run; the common path's cost is rss_stat's
//! ns per run in both settings.
use std::{process::Command, time::Duration};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{
    Ctx, Tool, is_event,
    measure::{lost_events, stop_tool},
    median, storm,
    sys::{self, Prog},
    tool::Proc,
};

/// Allocation storms per agent: their rss_stat time is summed, so that a
/// step's few µs stand out of the noise of some 100,000 runs per storm.
const ALLOC_STORMS: usize = 4;
/// The fine step of the second agent of each setting: 32 times as many
/// growth steps as the default 4Mi, so that their stacks' cost stands out
/// of rss_stat's common path (which a 4Mi step's µs per 1,024 pages do not,
/// on a shared machine). Finer steps are not seen: the counter rss_stat
/// reports moves in per-CPU batches of 32 pages here.
const FINE_STEP: &str = "128Ki";
/// Containers OOM-killed at once per agent.
const KILLS: usize = 5;
/// The settings, in the order of even runs.
const SETTINGS: [bool; 2] = [true, false];

/// One agent's numbers.
#[derive(Default)]
struct Sample {
    rss_mib: f64,
    rss_stat_runs: u64,
    rss_stat_ns: u64,
    steps: u64,
    victim_runs: u64,
    victim_ns: u64,
    tasks_runs: u64,
    tasks_ns: u64,
    lost: u64,
    /// The storms again under an agent with `--alloc-step FINE_STEP`.
    fine: Storms,
}

/// The allocation storms' rss_stat time, runs and growth steps.
#[derive(Default, Clone, Copy)]
struct Storms {
    ns: u64,
    runs: u64,
    steps: u64,
}

impl Sample {
    fn per_run(ns: u64, runs: u64) -> f64 {
        if runs == 0 {
            f64::NAN
        } else {
            ns as f64 / runs as f64
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "idle_rss_mib": self.rss_mib,
            "rss_stat_runs": self.rss_stat_runs,
            "rss_stat_total_ns": self.rss_stat_ns,
            "rss_stat_ns_per_run": Self::per_run(self.rss_stat_ns, self.rss_stat_runs),
            "growth_steps": self.steps,
            "mark_victim_runs": self.victim_runs,
            "mark_victim_ns_per_run": Self::per_run(self.victim_ns, self.victim_runs),
            "mark_victim_tasks_runs": self.tasks_runs,
            "mark_victim_tasks_ns_per_run": Self::per_run(self.tasks_ns, self.tasks_runs),
            "lost_events": self.lost,
            "fine_step": {"alloc_step": FINE_STEP, "rss_stat_total_ns": self.fine.ns,
                "rss_stat_runs": self.fine.runs, "growth_steps": self.fine.steps},
        })
    }
}

/// Sum of run time and run count of the programs on `hook` between two snapshots.
fn hook_total(
    progs: &[Prog],
    hook: &str,
    before: &std::collections::BTreeMap<u32, sys::ProgStat>,
    after: &std::collections::BTreeMap<u32, sys::ProgStat>,
) -> (u64, u64) {
    let (mut ns, mut runs) = (0, 0);
    for x in progs.iter().filter(|x| x.hook == hook) {
        if let (Some(b), Some(a)) = (before.get(&x.id), after.get(&x.id)) {
            ns += a.run_time_ns.saturating_sub(b.run_time_ns);
            runs += a.run_count.saturating_sub(b.run_count);
        }
    }
    (ns, runs)
}

/// Median and spread of a measure over runs.
fn stats(v: &[f64]) -> Value {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return json!({"median": null, "min": null, "max": null, "n": 0});
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    json!({"median": median(&mut v), "min": min, "max": max, "n": v.len()})
}

impl Ctx {
    /// One agent with call sites `on` or off: its idle RSS, the allocation
    /// storms and the kills.
    /// An agent with call sites `on` or off (and `extra` arguments), its
    /// programs found, 1 s after its start.
    fn start_agent(&mut self, on: bool, extra: &[&str]) -> anyhow::Result<(Proc, Vec<Prog>)> {
        let mut c = Command::new(&self.tracer);
        c.args(["agent", "--no-cri", "--kube-api", "off"])
            .args(["--callsites", if on { "true" } else { "false" }])
            .args(extra)
            .env("OOM_TRACER_LOG", "warn");
        let mut agent = Proc::spawn(
            "oom-tracer agent (call sites)",
            c,
            &self.out.join("oom-tracer-callsites.stderr"),
        )?;
        agent.wait_for(0, Duration::from_secs(60), |l| is_event(&l.text, "start"))?;
        let progs = self.programs_of(Tool::OomTracer, &agent, false)?;
        sys::sleep(Duration::from_secs(1))?;
        Ok((agent, progs))
    }

    /// `ALLOC_STORMS` allocation storms in fresh watched containers.
    fn alloc_storms(&mut self, agent: &Proc, progs: &[Prog]) -> anyhow::Result<Storms> {
        let ids: Vec<u32> = progs.iter().map(|x| x.id).collect();
        let mut s = Storms::default();
        for _ in 0..ALLOC_STORMS {
            sys::check_interrupted()?;
            let cg = self.container()?;
            let mark = agent.mark();
            let before = sys::prog_stats(&ids);
            storm::alloc_storm(&cg, &self.stress)?;
            let after = sys::prog_stats(&ids);
            let (ns, runs) = hook_total(progs, "rss_stat", &before, &after);
            s.ns += ns;
            s.runs += runs;
            // The drain reads every 100 ms: let it print the storm's steps.
            sys::sleep(Duration::from_millis(300))?;
            s.steps += anon_steps(agent, mark, &sys::cgroup_path(&cg));
            self.cgroups.remove(&cg)?;
        }
        Ok(s)
    }

    fn callsites_agent(&mut self, on: bool) -> anyhow::Result<Sample> {
        let (agent, progs) = self.start_agent(on, &[])?;
        let mut s = Sample {
            rss_mib: sys::rss_kib(agent.pid()).map_or(f64::NAN, |r| r / 1024.0),
            ..Sample::default()
        };
        let ids: Vec<u32> = progs.iter().map(|x| x.id).collect();
        let st = self.alloc_storms(&agent, &progs)?;
        (s.rss_stat_ns, s.rss_stat_runs, s.steps) = (st.ns, st.runs, st.steps);

        let burstable = self.pod.parent().context("pod parent")?.to_owned();
        let (pod, cgs) = self.oom_pod(&burstable, KILLS)?;
        let mut armed = storm::arm(&self.stress, &cgs)?;
        let before = sys::prog_stats(&ids);
        let (killed, _) = storm::release(&mut armed, Duration::from_secs(60))?;
        sys::sleep(Duration::from_millis(500))?;
        let after = sys::prog_stats(&ids);
        drop(armed);
        (s.victim_ns, s.victim_runs) = hook_total(&progs, "mark_victim", &before, &after);
        (s.tasks_ns, s.tasks_runs) = hook_total(&progs, "mark_victim_tasks", &before, &after);
        if killed < KILLS {
            eprintln!("xtask: bench: call sites: only {killed} of {KILLS} OOM-killed");
        }
        let lines = stop_tool(Tool::OomTracer, agent)?;
        self.cgroups.remove(&pod)?;
        s.lost = lost_events(Tool::OomTracer, &lines)?;

        // The storms again, with 32 times the steps.
        let (agent, progs) = self.start_agent(
            on,
            &["--alloc-step", FINE_STEP, "--ring-buffer-size", "16Mi"],
        )?;
        s.fine = self.alloc_storms(&agent, &progs)?;
        let lines = stop_tool(Tool::OomTracer, agent)?;
        s.lost += lost_events(Tool::OomTracer, &lines)?;
        Ok(s)
    }

    /// The call sites phase: `--runs` pairs of agents, on and off in
    /// alternating order. Returns the summary for bench.json and the table.
    pub(super) fn callsites(&mut self) -> anyhow::Result<Value> {
        let mut runs: Vec<[Sample; 2]> = Vec::new();
        for r in 0..self.args.runs {
            let mut pair: [Option<Sample>; 2] = [None, None];
            let order = if r % 2 == 0 {
                SETTINGS
            } else {
                [SETTINGS[1], SETTINGS[0]]
            };
            for on in order {
                eprintln!(
                    "xtask: bench: call sites {}, run {}/{}: idle RSS, {ALLOC_STORMS} allocation \
                     storms, {KILLS} OOM kills",
                    if on { "on" } else { "off" },
                    r + 1,
                    self.args.runs
                );
                pair[usize::from(!on)] = Some(self.callsites_agent(on)?);
            }
            let [Some(on), Some(off)] = pair else {
                unreachable!("both settings ran")
            };
            runs.push([on, off]);
        }
        Ok(summary(&runs))
    }
}

/// `alloc` records of kind `anon` in cgroup `path` since `mark`.
fn anon_steps(p: &Proc, mark: usize, path: &str) -> u64 {
    p.with_lines(mark, |ls| {
        ls.iter()
            .filter(|l| is_event(&l.text, "alloc"))
            .filter_map(|l| serde_json::from_str::<Value>(&l.text).ok())
            .filter(|v| v["kind"] == "anon" && v["cgroup"] == path)
            .count() as u64
    })
}

/// A number of one agent's sample.
type Measure = fn(&Sample) -> f64;

/// Medians and spreads of each measure, on and off, and a step's cost.
fn summary(runs: &[[Sample; 2]]) -> Value {
    let col = |i: usize, f: Measure| -> Vec<f64> { runs.iter().map(|p| f(&p[i])).collect() };
    let measures: [(&str, Measure); 11] = [
        ("rss_stat_ns_per_run", |s| {
            Sample::per_run(s.rss_stat_ns, s.rss_stat_runs)
        }),
        ("rss_stat_runs", |s| s.rss_stat_runs as f64),
        ("rss_stat_total_ms", |s| s.rss_stat_ns as f64 / 1e6),
        ("growth_steps", |s| s.steps as f64),
        ("mark_victim_ns_per_run", |s| {
            Sample::per_run(s.victim_ns, s.victim_runs)
        }),
        ("mark_victim_tasks_ns_per_run", |s| {
            Sample::per_run(s.tasks_ns, s.tasks_runs)
        }),
        ("idle_rss_mib", |s| s.rss_mib),
        ("fine_rss_stat_runs", |s| s.fine.runs as f64),
        ("fine_rss_stat_total_ms", |s| s.fine.ns as f64 / 1e6),
        ("fine_growth_steps", |s| s.fine.steps as f64),
        ("lost_events", |s| s.lost as f64),
    ];
    let mut on = serde_json::Map::new();
    let mut off = serde_json::Map::new();
    for (k, f) in measures {
        on.insert(k.into(), stats(&col(0, f)));
        off.insert(k.into(), stats(&col(1, f)));
    }
    // Per run: (total on − total off) / the steps taken with call sites on.
    let step_ns: Vec<f64> = runs
        .iter()
        .map(|[a, b]| (a.rss_stat_ns as f64 - b.rss_stat_ns as f64) / a.steps.max(1) as f64)
        .collect();
    let fine_step_ns: Vec<f64> = runs
        .iter()
        .map(|[a, b]| (a.fine.ns as f64 - b.fine.ns as f64) / a.fine.steps.max(1) as f64)
        .collect();
    let rss_delta: Vec<f64> = runs.iter().map(|[a, b]| a.rss_mib - b.rss_mib).collect();
    json!({
        "alloc_storms_per_agent": ALLOC_STORMS,
        "kills_per_agent": KILLS,
        "on": on,
        "off": off,
        "growth_step_stack_ns": stats(&step_ns),
        "fine_step": FINE_STEP,
        "fine_growth_step_stack_ns": stats(&fine_step_ns),
        "idle_rss_delta_mib": stats(&rss_delta),
        "kernel_maps": {
            "stacks_max": oom_tracer_common::STACKS_MAX,
            "stack_depth": oom_tracer_common::STACK_DEPTH,
            "callsites_max": oom_tracer_common::CALLSITES_MAX,
        },
        "runs": runs.iter().map(|[a, b]| json!({"on": a.to_json(), "off": b.to_json()})).collect::<Vec<_>>(),
    })
}

/// `median (min–max)` of a summary entry, `-` when absent.
fn cell(v: &Value, dec: usize) -> String {
    let f = |k: &str| v[k].as_f64();
    match (f("median"), f("min"), f("max")) {
        (Some(m), Some(lo), Some(hi)) => format!("{m:.dec$} ({lo:.dec$}–{hi:.dec$})"),
        _ => "-".into(),
    }
}

/// The call sites table for bench.md.
pub(super) fn render(v: &Value, runs: usize) -> String {
    let mut md = format!(
        "\nCall sites on and off (`--callsites false`), the agent, medians of {runs} runs \
         (min–max), on/off order alternating; per agent {} allocation storms (stress to 400Mi \
         in 4Mi steps, watched) and {} containers OOM-killed at once:\n\n\
         | measure | call sites on | call sites off |\n|---|---|---|\n",
        v["alloc_storms_per_agent"], v["kills_per_agent"]
    );
    for (label, key, dec) in [
        ("rss_stat, ns per run", "rss_stat_ns_per_run", 1),
        ("rss_stat runs per agent", "rss_stat_runs", 0),
        (
            "rss_stat total run time per agent, ms",
            "rss_stat_total_ms",
            2,
        ),
        (
            "growth steps per agent (`alloc` records, anon)",
            "growth_steps",
            0,
        ),
        ("mark_victim, ns per run", "mark_victim_ns_per_run", 0),
        (
            "mark_victim_tasks, ns per run",
            "mark_victim_tasks_ns_per_run",
            0,
        ),
        ("agent idle RSS, 1 s after start, MiB", "idle_rss_mib", 1),
        (
            "`--alloc-step 128Ki` agent: rss_stat total run time, ms",
            "fine_rss_stat_total_ms",
            2,
        ),
        (
            "`--alloc-step 128Ki` agent: rss_stat runs",
            "fine_rss_stat_runs",
            0,
        ),
        (
            "`--alloc-step 128Ki` agent: growth steps",
            "fine_growth_steps",
            0,
        ),
        ("lost events (both agents)", "lost_events", 0),
    ] {
        md.push_str(&format!(
            "| {label} | {} | {} |\n",
            cell(&v["on"][key], dec),
            cell(&v["off"][key], dec)
        ));
    }
    let k = &v["kernel_maps"];
    md.push_str(&format!(
        "\nA growth step's stack: (rss_stat total on − off) / growth steps = {} ns per step \
         (per run pair; target ≤ 2000); the same with `--alloc-step {}` (32 times the steps): {} \
         ns per step. Idle RSS on − off: {} MiB. Kernel maps (call sites on): \
         STACKS at most {} stacks of {} frames (about 1 KiB each), CALLSITES at most {} sums (LRU).\n",
        cell(&v["growth_step_stack_ns"], 0),
        v["fine_step"].as_str().unwrap_or("-"),
        cell(&v["fine_growth_step_stack_ns"], 0),
        cell(&v["idle_rss_delta_mib"], 1),
        k["stacks_max"],
        k["stack_depth"],
        k["callsites_max"],
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_costs_the_difference_over_the_steps() {
        let on = Sample {
            rss_stat_ns: 10_200_000,
            rss_stat_runs: 100_000,
            steps: 100,
            ..Sample::default()
        };
        let off = Sample {
            rss_stat_ns: 10_000_000,
            rss_stat_runs: 100_000,
            ..Sample::default()
        };
        let v = summary(&[[on, off]]);
        assert_eq!(v["growth_step_stack_ns"]["median"], 2000.0);
        assert_eq!(v["on"]["rss_stat_ns_per_run"]["median"], 102.0);
        assert!(render(&v, 1).contains("2000 (2000–2000) ns per step"));
    }

    #[test]
    fn spread_is_min_to_max() {
        let v = stats(&[3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!(
            (v["median"].as_f64(), v["min"].as_f64()),
            (Some(2.0), Some(1.0))
        );
        assert_eq!(v["max"], 3.0);
        assert_eq!(cell(&stats(&[]), 1), "-");
    }
}
