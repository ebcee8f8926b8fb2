//! The OOM phases: kill → record latency, and the OOM storm.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context as _;
use serde_json::Value;

use super::{
    Ctx, OOM_LIMIT, Tool, is_event,
    measure::{bt_lost_line, lost_events, stop_tool},
    percentile, storm,
    sys::{self, Cgroups, Prog},
    tool::Proc,
};

impl Ctx {
    /// `oom-tracer run`'s resident memory while its workload idles: one
    /// sample per run, 1 s after the workload's exec.
    pub(super) fn run_idle_rss(&mut self) -> anyhow::Result<()> {
        let parent = sys::cgroup_path(&self.own);
        for _ in 0..self.args.runs {
            let mut c = Command::new(&self.tracer);
            c.args(["run", "--cgroup-parent", &parent, "--"])
                .arg(&self.stress)
                .args(["--step", "1Mi", "--interval", "10ms", "--max", "4Mi"])
                .args(["--hold", "30s"])
                .env("OOM_TRACER_LOG", "warn");
            let mut p = Proc::spawn("oom-tracer run", c, &self.out.join("oom-tracer-run.stderr"))?;
            p.wait_for(0, Duration::from_secs(60), |l| is_event(&l.text, "exec"))?;
            sys::sleep(Duration::from_secs(1))?;
            if let Some(r) = sys::rss_kib(p.pid()) {
                self.samples
                    .add(Tool::OomTracer, "run_idle.rss_mib", r / 1024.0);
            }
            p.finish(Some(libc::SIGTERM), Duration::from_secs(15))?;
        }
        Ok(())
    }

    /// OOM kill → stdout latency: `--kills` kills under `oom-tracer run`
    /// per run, beside a bpftrace started for the run that times its own
    /// lines for the same victims. At a kill the tool attached first is
    /// woken first, so the runs alternate which tool attaches first
    /// (bpftrace in the first run); the workload waits until both are.
    /// Returns the events bpftrace lost.
    pub(super) fn latency(&mut self) -> anyhow::Result<u64> {
        let parent = sys::cgroup_path(&self.own);
        let kills = self.args.kills.max(1);
        let go = self.out.join("latency.go");
        let mut bt_lost = 0;
        for r in 0..self.args.runs {
            let first = if r % 2 == 0 {
                Tool::Bpftrace
            } else {
                Tool::OomTracer
            };
            eprintln!(
                "xtask: bench: OOM latency, run {}/{}: {kills} kills, {} attached first",
                r + 1,
                self.args.runs,
                first.name()
            );
            let _ = std::fs::remove_file(&go);
            let mut c = Command::new(&self.tracer);
            c.args(["run", "--cgroup-parent", &parent])
                .args(["--memory-limit", "20Mi", "--restart-policy", "Always"])
                .args(["--max-restarts", &(kills - 1).to_string()])
                .args(["--backoff-initial", "100ms", "--backoff-max", "100ms", "--"])
                .arg(&self.stress)
                .args(["--step", "5Mi", "--interval", "1ms", "--wait-for"])
                .arg(&go)
                .env("OOM_TRACER_LOG", "warn");
            let stderr = self.out.join("oom-tracer-run.stderr");
            let (bt, mut p) = if first == Tool::Bpftrace {
                let bt = self.ready_bpftrace()?;
                (bt, Self::ready_run(c, &stderr)?)
            } else {
                let p = Self::ready_run(c, &stderr)?;
                (self.ready_bpftrace()?, p)
            };
            std::fs::write(&go, b"").with_context(|| format!("creating {}", go.display()))?;
            p.wait_for(0, Duration::from_secs(120), |l| is_event(&l.text, "stop"))?;
            let lines = p.finish(None, Duration::from_secs(10))?;
            sys::sleep(Duration::from_millis(300))?;
            let bt_lines = stop_tool(Tool::Bpftrace, bt)?;
            bt_lost += lost_events(Tool::Bpftrace, &bt_lines)?;
            let mut ours = BTreeMap::new();
            for l in &lines {
                if !is_event(&l.text, "oom_kill") {
                    continue;
                }
                let v: Value = serde_json::from_str(&l.text)?;
                let t = v["time"]
                    .as_str()
                    .and_then(sys::parse_rfc3339_ns)
                    .context("oom_kill without a time")?;
                if let Some(pid) = v["victim"]["pid"].as_u64() {
                    ours.insert(pid, (l.real_ns as f64 - t as f64) / 1e6);
                }
            }
            let theirs: BTreeMap<u64, f64> = bt_lines
                .iter()
                .filter_map(|l| {
                    let f: Vec<&str> = l.text.split_whitespace().collect();
                    if f.first() != Some(&"oom_kill") {
                        return None;
                    }
                    let ns: u64 = f.get(1)?.parse().ok()?;
                    let pid: u64 = f.get(2)?.parse().ok()?;
                    Some((pid, (l.mono_ns as f64 - ns as f64) / 1e6))
                })
                .collect();
            // The kills both tools saw.
            let lat: Vec<f64> = ours
                .iter()
                .filter(|(pid, _)| theirs.contains_key(pid))
                .map(|(_, &ms)| ms)
                .collect();
            let bt_lat: Vec<f64> = theirs
                .iter()
                .filter(|(pid, _)| ours.contains_key(pid))
                .map(|(_, &ms)| ms)
                .collect();
            let mut p50 = Vec::new();
            for (tool, mut v) in [(Tool::OomTracer, lat), (Tool::Bpftrace, bt_lat)] {
                self.samples.add(tool, "latency.kills", v.len() as f64);
                let m = percentile(&mut v, 50.0);
                p50.push(m);
                self.samples.add(tool, "latency.p50_ms", m);
                self.samples
                    .add(tool, "latency.p99_ms", percentile(&mut v, 99.0));
                self.latencies.entry(tool).or_default().extend(v);
            }
            self.notes.push(format!(
                "OOM latency run {}: {} attached first; p50 oom-tracer {:.3} ms, bpftrace {:.3} ms",
                r + 1,
                first.name(),
                p50[0],
                p50[1]
            ));
        }
        let _ = std::fs::remove_file(&go);
        Ok(bt_lost)
    }

    /// bpftrace, started and attached.
    fn ready_bpftrace(&self) -> anyhow::Result<Proc> {
        let mut bt = self.spawn(Tool::Bpftrace)?;
        bt.wait_for(0, Duration::from_secs(60), |l| l.text.starts_with("ready "))?;
        Ok(bt)
    }

    /// `oom-tracer run`, started and attached (its `start` record).
    fn ready_run(c: Command, stderr: &Path) -> anyhow::Result<Proc> {
        let mut p = Proc::spawn("oom-tracer run", c, stderr)?;
        p.wait_for(0, Duration::from_secs(60), |l| is_event(&l.text, "start"))?;
        Ok(p)
    }

    /// A new pod below `burstable` with `n` container cgroups, each limited
    /// to `OOM_LIMIT` (the storm's and the hung runtime's victims).
    pub(super) fn oom_pod(
        &mut self,
        burstable: &Path,
        n: usize,
    ) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
        let pod = burstable.join(format!("pod{}", sys::uuid()));
        let mut cgs = Vec::with_capacity(n);
        for _ in 0..n {
            let d = pod.join(sys::random_hex(32));
            self.cgroups.create(&d)?;
            Cgroups::set_limit(&d, OOM_LIMIT)?;
            cgs.push(d);
        }
        Ok((pod, cgs))
    }

    /// `--storm` container cgroups OOM-killed at once while the agent and
    /// bpftrace (`bt`) trace.
    pub(super) fn oom_storm(&mut self, bt: &Proc, bt_progs: &[Prog]) -> anyhow::Result<()> {
        let n = self.args.storm.max(1);
        let burstable = self.pod.parent().context("pod parent")?.to_owned();
        for r in 0..self.args.runs {
            eprintln!(
                "xtask: bench: OOM storm, run {}/{}: {n} cgroups",
                r + 1,
                self.args.runs
            );
            let (pod, cgs) = self.oom_pod(&burstable, n)?;
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
