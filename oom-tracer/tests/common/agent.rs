//! A running `oom-tracer agent` for the integration tests.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use serde_json::Value;

use super::{TRACER, kubelet::SOCKET};

/// A running `oom-tracer agent` and what it printed.
pub(crate) struct Agent {
    child: Child,
    records: Arc<Mutex<Vec<Value>>>,
    stdout: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    /// Starts the agent on the test runtime's socket and waits until it is ready.
    pub(crate) fn start(extra: &[&str]) -> Self {
        let mut args = vec!["--cri-socket", SOCKET, "--kube-api", "off"];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    /// Starts `oom-tracer agent ARGS` and waits until it is ready.
    pub(crate) fn start_with(args: &[&str]) -> Self {
        Self::start_wrapped(&[], args)
    }

    /// Starts `WRAPPER… oom-tracer agent ARGS` (a wrapper that ends by
    /// exec'ing its arguments, so that the child is the agent) and waits
    /// until it is ready.
    pub(crate) fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Self {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(TRACER);
                c
            }
            None => Command::new(TRACER),
        };
        let mut child = cmd
            .arg("agent")
            .args(args)
            .env("OOM_TRACER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the agent");
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                sink.lock().unwrap().push(v);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_sink = stderr.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if l.contains("agent ready") {
                    let _ = ready_tx.send(());
                }
                let mut e = err_sink.lock().unwrap();
                e.push_str(&l);
                e.push('\n');
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            panic!("agent not ready:\n{}", stderr.lock().unwrap());
        }
        Self {
            child,
            records,
            stdout: Some(stdout),
            stderr,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every record so far.
    pub(crate) fn records(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    /// Resident memory of the agent process, KiB.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    pub(crate) fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, wait, and return every record.
    pub(crate) fn stop(mut self) -> Vec<Value> {
        // Let the last kernel records drain (bulk records flush every 100 ms).
        std::thread::sleep(Duration::from_millis(400));
        // SAFETY: plain syscall on our child.
        unsafe { kill(self.child.id() as i32, 15) };
        let st = self.child.wait().unwrap();
        if let Some(h) = self.stdout.take() {
            h.join().unwrap();
        }
        let recs = self.records.lock().unwrap().clone();
        assert!(
            st.success(),
            "agent exit {st:?}\n{}",
            self.stderr.lock().unwrap()
        );
        assert_eq!(recs.last().map(|r| r["event"].clone()), Some("stop".into()));
        recs
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
