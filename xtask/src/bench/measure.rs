//! One tool's run: spawning it, waiting for it, finding its programs, and
//! measuring the kernel cost, CPU and RSS of each storm while it traces.
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{
    ALLOC_STEP, CHURN, Ctx, Load, Tool, is_event, storm,
    sys::{self, HOOKS, Prog},
    tool::{Line, Proc},
};

impl Ctx {
    pub(super) fn spawn(&self, tool: Tool) -> anyhow::Result<Proc> {
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
    pub(super) fn wait_ready(&mut self, tool: Tool, p: &mut Proc) -> anyhow::Result<()> {
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
    pub(super) fn programs_of(
        &mut self,
        tool: Tool,
        p: &Proc,
        first: bool,
    ) -> anyhow::Result<Vec<Prog>> {
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
    pub(super) fn container(&mut self) -> anyhow::Result<PathBuf> {
        let d = self.pod.join(sys::random_hex(32));
        self.cgroups.create(&d)?;
        Ok(d)
    }

    /// Runs `load` while tool `p` traces, recording per-hook kernel cost,
    /// the tool's CPU and peak RSS, and the exec records it printed.
    pub(super) fn measure(
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
    pub(super) fn tool_run(&mut self, tool: Tool, first: bool) -> anyhow::Result<()> {
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

        // Two exec loops for `secs` inside `cg`.
        let exec_load = |cg: &Path| -> anyhow::Result<Load> {
            let (n, s) = storm::exec_storm(cg, secs, &stopfile)?;
            Ok(Load {
                execs: Some(n),
                secs: s,
                cgroup: Some(cg.to_owned()),
            })
        };
        let cg = self.container()?;
        self.measure(tool, &p, &progs, "exec_watched", |_| exec_load(&cg))?;
        self.cgroups.remove(&cg)?;

        let cg = self.own.join(format!("exec-{}", sys::random_hex(6)));
        self.cgroups.create(&cg)?;
        self.measure(tool, &p, &progs, "exec_unwatched", |_| exec_load(&cg))?;
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
}

/// Exec records of tool `p` since `mark` for processes in `cg`.
pub(super) fn count_exec_records(
    tool: Tool,
    p: &Proc,
    mark: usize,
    cg: &Path,
) -> anyhow::Result<u64> {
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
pub(super) fn bt_lost_line(text: &str) -> u64 {
    text.strip_prefix("Lost ")
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Stops a tool (oom-tracer: SIGTERM, then its stop record; bpftrace:
/// SIGINT, as Ctrl-C) and returns what it printed.
pub(super) fn stop_tool(tool: Tool, p: Proc) -> anyhow::Result<Vec<Line>> {
    let sig = match tool {
        Tool::OomTracer => libc::SIGTERM,
        Tool::Bpftrace => libc::SIGINT,
    };
    p.finish(Some(sig), Duration::from_secs(15))
}

/// Events the tool could not hand to userspace: oom-tracer's stop record
/// `lost_events`, bpftrace's "Lost N events" lines.
pub(super) fn lost_events(tool: Tool, lines: &[Line]) -> anyhow::Result<u64> {
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
