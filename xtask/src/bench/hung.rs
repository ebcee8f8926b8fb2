//! OOM kill → stdout with the container runtime hung: the agent's CRI
//! socket accepts connections and never answers, as a containerd stuck
//! under a node's memory pressure does. `HUNG_KILLS` new container cgroups
//! under kubepods are OOM-killed at once; every kill must still reach
//! stdout at once, with or without its names (issue 18's goal: within
//! 100 ms of its kernel time).
use std::{
    collections::BTreeSet,
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use serde_json::Value;

use super::{Ctx, Tool, is_event, percentile, storm, sys, tool::Proc};

/// How long the agent is given after the kills before it is stopped: a
/// kill not on stdout by then is counted as late (and seen at the stop).
const GRACE: Duration = Duration::from_secs(10);
/// The goal for each kill, kill → line on stdout.
const GOAL_MS: f64 = 100.0;

/// A CRI socket that accepts every connection and never answers.
struct HungSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HungSocket {
    fn bind(path: &Path) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding the hung runtime's socket {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // Held open, never read: the agent's calls wait for an answer.
            let mut held: Vec<UnixStream> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HungSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Ctx {
    /// `--hung-kills` new containers OOM-killed at once under the agent
    /// whose runtime hangs; per run, kill → stdout p50/p99/max and how
    /// many made the goal.
    pub(super) fn hung_runtime(&mut self) -> anyhow::Result<()> {
        let n = self.args.hung_kills;
        if n == 0 {
            return Ok(());
        }
        let burstable = self.pod.parent().context("pod parent")?.to_owned();
        let socket = HungSocket::bind(&self.out.join("hung-cri.sock"))?;
        for r in 0..self.args.runs {
            eprintln!(
                "xtask: bench: OOM kills with the runtime hung, run {}/{}: {n} new containers",
                r + 1,
                self.args.runs
            );
            let (pod, cgs) = self.oom_pod(&burstable, n)?;
            let mut c = Command::new(&self.tracer);
            c.args(["agent", "--kube-api", "off", "--cri-socket"])
                .arg(&socket.path)
                .env("OOM_TRACER_LOG", "warn");
            let mut agent = Proc::spawn(
                "oom-tracer agent (runtime hung)",
                c,
                &self.out.join("oom-tracer-hung.stderr"),
            )?;
            agent.wait_for(0, Duration::from_secs(60), |l| is_event(&l.text, "start"))?;
            sys::sleep(Duration::from_millis(500))?;
            let mut armed = storm::arm(&self.stress, &cgs)?;
            let (killed, _) = storm::release(&mut armed, Duration::from_secs(60))?;
            let victims: BTreeSet<u64> = armed.iter().map(|a| u64::from(a.child.id())).collect();
            drop(armed);
            sys::sleep(GRACE)?;
            let lines = agent.finish(Some(libc::SIGTERM), Duration::from_secs(30))?;
            self.cgroups.remove(&pod)?;
            let mut lat = latencies(&lines, &victims)?;
            let seen = lat.len();
            let on_time = lat.iter().filter(|&&ms| ms <= GOAL_MS).count();
            let s = &mut self.samples;
            let t = Tool::OomTracer;
            s.add(t, "hung_runtime.killed", killed as f64);
            s.add(t, "hung_runtime.records", seen as f64);
            s.add(t, "hung_runtime.within_100ms", on_time as f64);
            s.add(t, "hung_runtime.p50_ms", percentile(&mut lat, 50.0));
            s.add(t, "hung_runtime.p99_ms", percentile(&mut lat, 99.0));
            s.add(t, "hung_runtime.max_ms", percentile(&mut lat, 100.0));
        }
        Ok(())
    }
}

/// Kill → read, ms, of each `oom_kill` line whose victim is one of `victims`.
fn latencies(lines: &[super::tool::Line], victims: &BTreeSet<u64>) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for l in lines.iter().filter(|l| is_event(&l.text, "oom_kill")) {
        let v: Value = serde_json::from_str(&l.text)?;
        if !v["victim"]["pid"]
            .as_u64()
            .is_some_and(|p| victims.contains(&p))
        {
            continue;
        }
        let t = v["time"]
            .as_str()
            .and_then(sys::parse_rfc3339_ns)
            .context("oom_kill without a time")?;
        out.push((l.real_ns as f64 - t as f64) / 1e6);
    }
    Ok(out)
}
