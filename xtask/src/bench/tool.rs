//! A traced tool's process (oom-tracer or bpftrace): every line it prints
//! on stdout, stamped with the moment the benchmark read it.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};

use super::sys::{check_interrupted, mono_ns, real_ns, signal};

/// One stdout line and when the benchmark read it.
#[derive(Clone, Debug)]
pub(super) struct Line {
    /// CLOCK_MONOTONIC at the read.
    pub mono_ns: u64,
    /// CLOCK_REALTIME at the read.
    pub real_ns: u64,
    pub text: String,
}

type Lines = Arc<(Mutex<Vec<Line>>, Condvar)>;

pub(super) struct Proc {
    pub name: String,
    child: Option<Child>,
    lines: Lines,
    reader: Option<JoinHandle<()>>,
    /// CLOCK_MONOTONIC just before the spawn.
    pub spawned_mono: u64,
    pub spawned_at: SystemTime,
}

impl Proc {
    /// Spawns `cmd` with stdout read line by line; stderr goes to `stderr_log`.
    pub(super) fn spawn(name: &str, mut cmd: Command, stderr_log: &Path) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let spawned_at = SystemTime::now();
        let spawned_mono = mono_ns();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let lines: Lines = Arc::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(text) = l else { break };
                let line = Line {
                    mono_ns: mono_ns(),
                    real_ns: real_ns(),
                    text,
                };
                let (m, cv) = &*sink;
                if let Ok(mut v) = m.lock() {
                    v.push(line);
                }
                cv.notify_all();
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            lines,
            reader: Some(reader),
            spawned_mono,
            spawned_at,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// How many lines were read so far: a mark for `with_lines`.
    pub(super) fn mark(&self) -> usize {
        self.lines.0.lock().map_or(0, |v| v.len())
    }

    /// Runs `f` on the lines read since `from`.
    pub(super) fn with_lines<R>(&self, from: usize, f: impl FnOnce(&[Line]) -> R) -> R {
        let v = self.lines.0.lock().unwrap_or_else(|e| e.into_inner());
        f(v.get(from..).unwrap_or(&[]))
    }

    /// Waits for the first line since `from` that matches `pred`; returns
    /// its index and a copy.
    pub(super) fn wait_for(
        &mut self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Line) -> bool,
    ) -> anyhow::Result<(usize, Line)> {
        let until = Instant::now() + timeout;
        let (m, cv) = &*self.lines;
        let mut v = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            check_interrupted()?;
            if let Some(i) = v.iter().skip(from).position(&pred) {
                return Ok((from + i, v[from + i].clone()));
            }
            let now = Instant::now();
            if now >= until {
                bail!("{}: no expected line within {timeout:?}", self.name);
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                drop(v);
                // Its last lines may still be on their way from the pipe.
                std::thread::sleep(Duration::from_millis(100));
                let found = self.with_lines(from, |l| {
                    l.iter().position(&pred).map(|i| (from + i, l[i].clone()))
                });
                if let Some(found) = found {
                    return Ok(found);
                }
                let tail = self.with_lines(0, |l| {
                    l.iter()
                        .rev()
                        .take(3)
                        .map(|l| l.text.clone())
                        .collect::<Vec<_>>()
                });
                bail!("{} exited ({st}) early; last lines: {tail:?}", self.name);
            }
            let wait = (until - now).min(Duration::from_millis(50));
            v = cv
                .wait_timeout(v, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sends `sig` (if any), waits up to `timeout` for the exit (then
    /// SIGKILL), and returns every line the process printed.
    pub(super) fn finish(
        mut self,
        sig: Option<i32>,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Line>> {
        let mut child = self.child.take().context("already finished")?;
        if let Some(s) = sig {
            signal(child.id(), s);
        }
        let until = Instant::now() + timeout;
        let mut killed = false;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > until && !killed {
                eprintln!(
                    "xtask: bench: {} did not exit within {timeout:?}: SIGKILL",
                    self.name
                );
                let _ = child.kill();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let v = std::mem::take(&mut *self.lines.0.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(v)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: oom-tracer then removes its cgroups.
            signal(c.id(), libc::SIGTERM);
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
