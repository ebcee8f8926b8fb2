//! The markdown table and bench.json.
use serde_json::{Value, json};

use super::{
    Ctx, TOOLS, Tool, percentile,
    sys::{HOOKS, OWN_HOOKS},
};

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
cgroup_attach_task into the watched id only. oom-tracer caches each memory cgroup's \
verdict and each process's last size per CPU; bpftrace cannot express those caches and \
keeps both in its per-process map. bpftrace's `cgroup` builtin is the \
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
- oom-tracer's exec, exit, signal_generate, mark_victim, rss_stat and \
cgroup_attach_task are tp_btf programs. bpftrace 0.17 attaches classic tracepoints, \
where the kernel fills the trace record before the program runs, outside run_time_ns: \
for those hooks bpftrace's real per-event cost is higher than shown, and its filters \
read fields the kernel has just copied (cgroup_attach_task: the destination's id) \
where oom-tracer's read them from the kernel's structs. On this VM a tp_btf program \
that only compares one argument measured 15-25 ns per run more than a classic one that \
only compares one field, on the same tracepoint at the same time (signal_generate: \
108-116 against 89-97 ns): for the cold hooks (signal_generate, cgroup_attach_task, \
a few thousand runs a second at most) that floor, not the filter, sets the ratio. \
cgroup_mkdir/rmdir are classic tracepoints in both tools.
- mark_victim's run time is the ring buffer's (or perf buffer's) wake-up: an IRQ-work \
interrupt taken while the program runs, which wakes the reader. On this VM a \
mark_victim probe that only counts measured 0.37 µs per run, the same probe with a \
printf 18.5 µs.
- The tools run one at a time for startup, idle RSS and the storms, with the \
order alternating between runs. In the OOM phases bpftrace runs alongside \
oom-tracer: `oom-tracer run` drives the latency kills, and the agent traces the \
storm. Each latency run has its own bpftrace, and the runs alternate which tool attaches \
first (bpftrace in the first run; the notes give each run's order and p50): programs on \
the same tracepoint run in attach order, so at a kill the tool attached first is woken \
first. oom-tracer is also woken at the OOM killer's SIGKILL, microseconds before the \
kill; bench.bt prints that SIGKILL too. Latency: oom-tracer's is CLOCK_REALTIME at the read minus the record's \
`time`; bpftrace's is CLOCK_MONOTONIC at the read minus its `nsecs`.
- OOM latency on a VM with a serial console (`console=ttyS0`) and a console log level \
above 3 (/proc/sys/kernel/printk; bench.json `machine`): the OOM killer writes each kill's \
line to the console on the OOMing CPU, in the kernel, which a PREEMPT_NONE kernel does not \
preempt (about 0.8 ms on a Firecracker \
VM), and a tool woken by the kill that finds no other CPU free waits behind it. Measured on \
such a 2-vCPU VM: kill → stdout p50 0.8-1.2 ms at level 4, 0.11-0.12 ms at level 1 \
(bpftrace 0.07-0.48 ms). Which tool gets the free CPU first decides the comparison there.
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
    pub(super) fn report(&self, elapsed: f64) -> (String, Value) {
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
        row(
            &mut md,
            "`oom-tracer run` idle RSS, its workload holding 4 MiB (bpftrace: -)",
            "run_idle.rss_mib",
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
        let hung = format!(
            "runtime hung ({} new containers OOM-killed at once, the agent's CRI socket never \
             answers)",
            a.hung_kills
        );
        for (what, key, unit, dec) in [
            ("oom_kill lines for them", "hung_runtime.records", "", 0),
            (
                "lines within 100 ms of the kill",
                "hung_runtime.within_100ms",
                "",
                0,
            ),
            (
                "kill → line on stdout, p50",
                "hung_runtime.p50_ms",
                " ms",
                2,
            ),
            (
                "kill → line on stdout, p99",
                "hung_runtime.p99_ms",
                " ms",
                2,
            ),
            (
                "kill → line on stdout, max",
                "hung_runtime.max_ms",
                " ms",
                2,
            ),
        ] {
            row(&mut md, &format!("{hung}: {what}"), key, unit, dec);
        }
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
        // The kill's record leaves mark_victim without a wake-up where the
        // task list follows it (mark_victim_tasks wakes the reader): per
        // kill, oom-tracer pays for both.
        let per_kill = |hook: &str| s.median(Tool::OomTracer, &format!("hook.oom_storm.{hook}.ns"));
        if let (Some(a), Some(b)) = (per_kill("mark_victim"), per_kill("mark_victim_tasks")) {
            let bt = s.median(Tool::Bpftrace, "hook.oom_storm.mark_victim.ns");
            md.push_str(&format!(
                "| OOM storm | mark_victim + mark_victim_tasks, per kill | {} | {} | {} | |\n",
                fmt(Some(a + b), 0),
                fmt(bt, 0),
                fmt(ratio(Some(a + b), bt), 2),
            ));
        }
        md.push_str(&format!(
            "\nHooks that ran fewer than {MIN_RUNS} times in a storm are left out; bench.json has them.\n"
        ));
        md.push_str(
            "\noom-tracer's own hooks (the task list at a kill, reclaim pressure, page cache and \
             shmem growth; bpftrace's script has no counterpart), ns per run:\n\n\
             | storm | hook | oom-tracer | runs per storm |\n|---|---|---|---|\n",
        );
        for (storm, label) in STORMS {
            for hook in OWN_HOOKS {
                let ns = s.median(Tool::OomTracer, &format!("hook.{storm}.{hook}.ns"));
                let runs = s.median(Tool::OomTracer, &format!("hook.{storm}.{hook}.runs"));
                hooks.push(json!({
                    "storm": storm, "hook": hook,
                    "oom-tracer": {"ns_per_run": ns, "runs": runs},
                }));
                if runs.is_some_and(|n| n > 0.0) {
                    md.push_str(&format!(
                        "| {label} | {hook} | {} | {} |\n",
                        fmt(ns, 0),
                        fmt(runs, 0)
                    ));
                }
            }
        }
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
                "cargo xtask bench --runs {} --storm {} --kills {} --exec-secs {} --node-secs {}",
                a.runs, a.storm, a.kills, a.exec_secs, a.node_secs
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

/// The machine the bench ran on, for bench.json.
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
    // The OOM killer prints each kill (KERN_ERR) on the console when the
    // console log level lets it through: on a serial console (a VM's
    // ttyS0) that costs the OOMing CPU close to a millisecond in the
    // kernel (not preempted on PREEMPT_NONE), which every tool woken by
    // the kill may wait behind.
    let cmdline = read("/proc/cmdline");
    let consoles: Vec<&str> = cmdline
        .split_whitespace()
        .filter_map(|a| a.strip_prefix("console="))
        .collect();
    let console_loglevel = read("/proc/sys/kernel/printk")
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<u32>().ok());
    json!({
        "consoles": consoles,
        "console_loglevel": console_loglevel,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "memory_gib": (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cgroup": "v1 (memory hierarchy at /sys/fs/cgroup/memory)",
    })
}
