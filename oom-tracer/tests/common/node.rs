//! The kubelet's node-side work around a translated pod (`podspec`): the
//! pod's files and cgroup, image import (as `minikube image load` does it),
//! the container log files as `kubectl logs` reads them, and the HTTP
//! probes.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    kubelet::SOCKET,
    podspec::{PodCgroup, PodPlan, Probe},
};

/// The test runtime's pod network (tests/containerd/setup.sh).
pub(crate) const POD_CNI_CONFIG: &str = "/etc/oom-tracer-test/cni-pods/10-oom-tracer-test.conflist";
/// The kubelet's directories, for the test runtime.
pub(crate) const PODS_DIR: &str = "/var/lib/oom-tracer-test/kubelet/pods";
pub(crate) const LOGS_DIR: &str = "/var/log/oom-tracer-test/pods";

/// The gateway of the pod network: the node's address as pods see it.
pub(crate) fn pod_gateway() -> std::net::IpAddr {
    let text = std::fs::read_to_string(POD_CNI_CONFIG).unwrap_or_else(|e| {
        panic!(
            "{POD_CNI_CONFIG} ({e}): the test runtime has no pod network; run \
             tests/containerd/setup.sh (cargo xtask test does)"
        )
    });
    let conf: Value = serde_json::from_str(&text).expect("the CNI config is JSON");
    conf["plugins"][0]["ipam"]["ranges"][0][0]["gateway"]
        .as_str()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("{POD_CNI_CONFIG}: no gateway"))
}

/// `ctr images import` of an OCI archive into the CRI's namespace, as
/// `minikube image load` does on a containerd node. Returns the names the
/// archive brought.
pub(crate) fn import_image(archive: &Path) -> Vec<String> {
    assert!(
        archive.is_file(),
        "{} is missing: build the images with `cargo xtask images` (cargo xtask test does)",
        archive.display()
    );
    let snapshotter = std::fs::read_to_string("/etc/oom-tracer-test/containerd.toml")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                let v = l.trim().strip_prefix("snapshotter = ")?;
                Some(v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "overlayfs".into());
    let out = Command::new("ctr")
        .args([
            "--address",
            SOCKET,
            "--namespace",
            "k8s.io",
            "images",
            "import",
        ])
        .args(["--snapshotter", &snapshotter])
        .arg(archive)
        .output()
        .expect("running ctr (tests/containerd/setup.sh installs it)");
    assert!(
        out.status.success(),
        "ctr images import {}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // "unpacking docker.io/oom-tracer/agent:dev (sha256:...)...done"
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("unpacking ")?.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The memory and cpu hierarchies, for the pod cgroup (v1 or v2).
fn hierarchies() -> Vec<PathBuf> {
    let v1: Vec<PathBuf> = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .collect();
    if v1.is_empty() {
        vec![PathBuf::from("/sys/fs/cgroup")]
    } else {
        v1
    }
}

/// Writes the pod's files and creates its cgroup with the pod's limits,
/// as the kubelet does before RunPodSandbox.
pub(crate) fn prepare(plan: &PodPlan) {
    for f in &plan.files {
        std::fs::create_dir_all(f.path.parent().unwrap()).unwrap();
        std::fs::write(&f.path, &f.contents).unwrap();
    }
    for c in &plan.containers {
        std::fs::create_dir_all(Path::new(&plan.sandbox.log_directory).join(&c.name)).unwrap();
    }
    create_pod_cgroup(&plan.cgroup);
}

/// On cgroup v2 a controller's files exist in a cgroup only where its
/// parent enables the controller: the kubelet enables them from the root
/// down to the pod cgroups (and runc, below those, for the containers).
const V2_CONTROLLERS: &str = "+cpu +memory +pids";

fn enable_v2_controllers(root: &Path, rel: &str) {
    if !root.join("cgroup.subtree_control").exists() {
        return; // v1
    }
    let mut dir = root.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating the cgroup {}: {e}", dir.display()));
        let control = dir.join("cgroup.subtree_control");
        std::fs::write(&control, V2_CONTROLLERS)
            .unwrap_or_else(|e| panic!("writing {V2_CONTROLLERS} to {}: {e}", control.display()));
        dir.push(part);
    }
}

fn create_pod_cgroup(cg: &PodCgroup) {
    let rel = cg.path.trim_start_matches('/');
    for h in hierarchies() {
        enable_v2_controllers(&h, rel);
        let dir = h.join(rel);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating the pod cgroup {}: {e}", dir.display()));
        let write = |file: &str, value: String| {
            let p = dir.join(file);
            if p.exists() {
                std::fs::write(&p, &value)
                    .unwrap_or_else(|e| panic!("writing {value} to {}: {e}", p.display()));
            }
        };
        if let Some(limit) = cg.memory_limit {
            write("memory.limit_in_bytes", limit.to_string());
            write("memory.max", limit.to_string());
        }
        write("cpu.shares", cg.cpu_shares.to_string());
        if let Some(quota) = cg.cpu_quota {
            write("cpu.cfs_period_us", "100000".into());
            write("cpu.cfs_quota_us", quota.to_string());
            write("cpu.max", format!("{quota} 100000"));
        }
    }
}

/// The container's own memory cgroup directory.
pub(crate) fn memcg_dir(plan: &PodPlan, container_id: &str) -> PathBuf {
    let rel = format!(
        "{}/{container_id}",
        plan.cgroup.path.trim_start_matches('/')
    );
    let v1 = Path::new("/sys/fs/cgroup/memory").join(&rel);
    if v1.is_dir() {
        v1
    } else {
        Path::new("/sys/fs/cgroup").join(rel)
    }
}

/// A number from a cgroup file.
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A count from a v2 cgroup's memory.events (`max`, `oom`, `oom_kill`).
pub(crate) fn memory_event(memcg: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(memcg.join("memory.events"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Removes the pod's files (`dir`) and its cgroup (`cgroup`, e.g.
/// /kubepods/burstable/pod<uid>) after its sandbox is gone.
pub(crate) fn clean(dir: &Path, cgroup: &str) {
    let _ = std::fs::remove_dir_all(dir);
    let rel = cgroup.trim_start_matches('/');
    // runc made the pod's cgroup in every hierarchy, not only in the two
    // whose limits the kubelet sets.
    let mut all: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    all.push(PathBuf::from("/sys/fs/cgroup"));
    for h in all {
        let dir = h.join(rel);
        // Children first (a container cgroup runc left), then the pod's.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// The mount table of process `pid` as it sees it: (mount point, options
/// of that mount).
pub(crate) fn mounts(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ').skip(4);
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect()
}

/// One line of a CRI container log file.
#[derive(Debug, Clone)]
pub(crate) struct LogLine {
    pub time: String,
    pub stream: String,
    pub content: String,
}

/// The container's log file, where the CRI writes it (`kubectl logs` and
/// log collectors read the same file).
pub(crate) fn log_path(plan: &PodPlan, container: &str, attempt: u32) -> PathBuf {
    Path::new(&plan.sandbox.log_directory).join(format!("{container}/{attempt}.log"))
}

/// Parses a CRI log file: `<RFC 3339 time> <stream> <P|F> <content>`,
/// partial lines (`P`) joined to the full line that ends them. Returns the
/// raw bytes too.
pub(crate) fn read_log(path: &Path) -> (Vec<LogLine>, Vec<u8>) {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let text = String::from_utf8(raw.clone())
        .unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()));
    let mut lines = Vec::new();
    let mut partial: std::collections::HashMap<String, String> = Default::default();
    for l in text.lines() {
        let mut parts = l.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("{}: not a CRI log line: {l:?}", path.display());
        };
        let content = parts.next().unwrap_or("");
        let acc = partial.entry(stream.to_owned()).or_default();
        acc.push_str(content);
        match tag {
            "P" => {}
            "F" => lines.push(LogLine {
                time: time.to_owned(),
                stream: stream.to_owned(),
                content: std::mem::take(acc),
            }),
            other => panic!("{}: unknown CRI log tag {other:?} in {l:?}", path.display()),
        }
    }
    (lines, raw)
}

/// One HTTP GET as the kubelet's prober sends it; Ok(status) or why not.
pub(crate) fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))
}

/// The kubelet's rule: 200 <= status < 400 is a success.
pub(crate) fn probe_ok(r: &Result<u16, String>) -> bool {
    matches!(r, Ok(c) if (200..400).contains(c))
}

/// Polls `path` every 20 ms until it answers a success; returns the time
/// it took, or None after `limit`.
pub(crate) fn wait_http_ok(addr: SocketAddr, path: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe_ok(&http_get(addr, path, Duration::from_secs(1))) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Probe results: when, and the HTTP status or why there was none.
pub(crate) type ProbeResults = Vec<(Instant, Result<u16, String>)>;

/// A probe running on the kubelet's schedule, and its results.
pub(crate) struct Prober {
    pub probe: Probe,
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<ProbeResults>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prober {
    /// Starts probing `ip`: the initial delay, then every period.
    pub(crate) fn start(probe: &Probe, ip: std::net::IpAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let (p, st, res) = (probe.clone(), stop.clone(), results.clone());
        let thread = std::thread::spawn(move || {
            let addr = SocketAddr::new(ip, p.port);
            let sleep = |d: Duration| {
                let until = Instant::now() + d;
                while Instant::now() < until && !st.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            };
            sleep(p.initial_delay);
            while !st.load(Ordering::Relaxed) {
                let r = http_get(addr, &p.path, p.timeout);
                res.lock().unwrap().push((Instant::now(), r));
                sleep(p.period);
            }
        });
        Self {
            probe: probe.clone(),
            stop,
            results,
            thread: Some(thread),
        }
    }

    /// Stops probing; returns every result.
    pub(crate) fn stop(mut self) -> ProbeResults {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.results.lock().unwrap().clone()
    }

    /// The longest run of consecutive failures so far.
    pub(crate) fn worst_failure_run(results: &[(Instant, Result<u16, String>)]) -> u32 {
        let (mut worst, mut run) = (0, 0);
        for (_, r) in results {
            if probe_ok(r) {
                run = 0;
            } else {
                run += 1;
                worst = worst.max(run);
            }
        }
        worst
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
