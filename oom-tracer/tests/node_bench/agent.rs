//! The agent under test: its process (started with the CRI, the API and
//! metrics on), its records as they arrive on stdout, its metrics scraped
//! as Prometheus would, and its stop.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    NODE,
    common::{TRACER, kubelet::SOCKET},
};

/// The agent's records, as far as the checks need them.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) counts: BTreeMap<String, u64>,
    pub(crate) first: Option<Instant>,
    pub(crate) last: Option<Instant>,
    pub(crate) kills: Vec<Value>,
    pub(crate) restarts: Vec<Value>,
    pub(crate) starts: Vec<Value>,
    pub(crate) exits: Vec<Value>,
    pub(crate) lost: u64,
    pub(crate) stop: Option<Value>,
}

/// The agent's process, and what reads its output.
pub(crate) struct AgentProc {
    child: Child,
    seen: Arc<Mutex<Seen>>,
    stdout: Option<std::thread::JoinHandle<()>>,
    metrics: Option<String>,
}

impl AgentProc {
    pub(crate) fn start(kubeconfig: &std::path::Path) -> Self {
        let bin = std::env::var_os("OOM_TRACER_NODE_BENCH_AGENT")
            .map_or_else(|| PathBuf::from(TRACER), PathBuf::from);
        let mut child = Command::new(&bin)
            .args(["agent", "--cri-socket", SOCKET, "--kube-api", "auto"])
            .args(["--node-name", NODE, "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--listen", "127.0.0.1:0"])
            .env("OOM_TRACER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the agent");
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let sink = seen.clone();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                let ev = v["event"].as_str().unwrap_or("").to_owned();
                let mut s = sink.lock().unwrap();
                let now = Instant::now();
                s.first.get_or_insert(now);
                s.last = Some(now);
                *s.counts.entry(ev.clone()).or_default() += 1;
                match ev.as_str() {
                    "oom_kill" => s.kills.push(v),
                    "restart" => s.restarts.push(v),
                    "container_start" => s.starts.push(v),
                    "container_exit" => s.exits.push(v),
                    "lost" => s.lost += v["ringbuf_full"].as_u64().unwrap_or(1),
                    "stop" => s.stop = Some(v),
                    _ => {}
                }
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(std::env::temp_dir().join("node-bench-agent.log"))
                .expect("agent log");
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(i) = l.find("http://")
                    && let Some(end) = l[i..].find("/metrics")
                {
                    let _ = tx.send(Some(l[i + 7..i + end].to_owned()));
                }
                if l.contains("agent ready") {
                    let _ = tx.send(None);
                }
                let _ = writeln!(log, "{l}");
            }
        });
        let mut metrics = None;
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Some(addr)) => metrics = Some(addr),
                Ok(None) => break,
                Err(_) => {
                    let _ = child.kill();
                    panic!("the agent was not ready within 60 s (see node-bench-agent.log)");
                }
            }
        }
        Self {
            child,
            seen,
            stdout: Some(stdout),
            metrics,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GET /metrics, as Prometheus would: the metrics path stays in use.
    pub(crate) fn scrape(&self) -> usize {
        let Some(addr) = &self.metrics else { return 0 };
        let Ok(mut c) = std::net::TcpStream::connect(addr) else {
            return 0;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            c,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        );
        let mut body = String::new();
        let _ = c.read_to_string(&mut body);
        body.len()
    }

    /// SIGTERM, then the records.
    pub(crate) fn stop(mut self) -> Seen {
        // SAFETY: plain syscall on our child.
        unsafe { kill(self.child.id() as i32, 15) };
        let st = self.child.wait().unwrap();
        if let Some(h) = self.stdout.take() {
            h.join().unwrap();
        }
        assert!(st.success(), "agent exit {st:?} (see node-bench-agent.log)");
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// An agent not stopped by [`AgentProc::stop`] (the bench failed or
/// panicked): SIGTERM, so that it removes what it made, then SIGKILL.
impl Drop for AgentProc {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SAFETY: plain syscall on our child, which has not been reaped.
        unsafe { kill(self.child.id() as i32, 15) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
