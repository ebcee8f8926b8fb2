//! Node layouts built on this machine (a cgroup v1 memory controller) with
//! namespaces and mounts, as the nodes people run see their cgroups: the
//! bare node; a node in a container whose view is a cgroup namespace
//! (a v2 host's docker driver, kind); a node in a container whose view is
//! a bind mount of its sub-cgroup (docker on a v1 host); each read-only or
//! writable. The node's pods are made by hand with the kubelet's names
//! (cgroupfs, systemd, kind's `kubelet.slice`), and the agent runs with
//! neither the CRI nor the API (`--no-cri --kube-api off`).
//!
//! Nothing here touches the machine's own cgroups: every node cgroup is
//! below `/oom-tracer-test/layouts-<pid>` and removed again.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{agent::Agent, stress};

/// The v1 memory hierarchy, as this machine mounts it.
pub(crate) const MEMORY: &str = "/sys/fs/cgroup/memory";

pub(crate) const POD_UID: &str = "5f0c1b2a-3d4e-4f60-8a9b-0c1d2e3f4a5b";
pub(crate) const CTR_ID: &str = "7a1e0b9c2d3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3";
/// The container's limit.
pub(crate) const LIMIT: u64 = 50 << 20;

/// How the kubelet names its cgroups.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Names {
    /// cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`.
    Cgroupfs,
    /// systemd driver: `/kubepods.slice/…/cri-containerd-<id>.scope`.
    Systemd,
    /// kind: the systemd names below `kubelet.slice`, prefixed `kubelet-`.
    Kind,
}

impl Names {
    /// The pod's and the container's paths, as the node names them.
    pub(crate) fn paths(self) -> (String, String) {
        let u_ = POD_UID.replace('-', "_");
        let systemd =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u_}.slice");
        let pod = match self {
            Self::Cgroupfs => format!("/kubepods/burstable/pod{POD_UID}"),
            Self::Systemd => systemd,
            Self::Kind => format!(
                "/kubelet.slice{}",
                systemd.replace("kubepods", "kubelet-kubepods")
            ),
        };
        let ctr = match self {
            Self::Cgroupfs => format!("{pod}/{CTR_ID}"),
            Self::Systemd | Self::Kind => format!("{pod}/cri-containerd-{CTR_ID}.scope"),
        };
        (pod, ctr)
    }
}

/// How the node sees the memory hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// The machine's own: the node's cgroups at the hierarchy's root.
    Bare,
    /// A cgroup namespace rooted at the node's cgroup, the hierarchy
    /// mounted again inside it.
    Namespace { read_only: bool },
    /// The node's sub-cgroup bind-mounted over the hierarchy, the cgroup
    /// namespace the host's.
    Bind { read_only: bool },
}

impl View {
    pub(crate) const ALL: [View; 5] = [
        View::Bare,
        View::Namespace { read_only: false },
        View::Namespace { read_only: true },
        View::Bind { read_only: false },
        View::Bind { read_only: true },
    ];
}

/// A node: its cgroup (the hierarchy's root for the bare node) and the
/// cgroup its agent runs in, removed on drop with everything below.
pub(crate) struct Node {
    pub view: View,
    /// The node's cgroup, as the kernel names it (`""`: the root).
    pub root: String,
    /// The base all test nodes live below (removed on drop).
    base: Option<PathBuf>,
    /// The first directory of the kubelet's tree made for the node (on
    /// the bare node, where the tree may be there already).
    made: Option<PathBuf>,
}

impl Node {
    /// A node whose kubelet names pods `names`: its kubepods tree down to
    /// the pods' QoS level is there before the agent starts, as on a node.
    pub(crate) fn new(view: View, names: Names) -> Self {
        let tag = format!("{names:?}").to_lowercase();
        assert!(
            Path::new(MEMORY).join("cgroup.procs").is_file(),
            "{MEMORY} is not a cgroup v1 memory hierarchy: these layouts are built on one"
        );
        let base = format!("/oom-tracer-test/layouts-{}", std::process::id());
        let (root, base) = match view {
            View::Bare => (String::new(), None),
            _ => (
                format!("{base}/node-{tag}"),
                Some(Path::new(MEMORY).join(base.trim_start_matches('/'))),
            ),
        };
        let mut node = Self {
            view,
            root,
            base,
            made: None,
        };
        if node.base.is_some() {
            std::fs::create_dir_all(node.dir("/agent")).unwrap();
        }
        let (pod, _) = names.paths();
        let qos = node.dir(&pod).parent().unwrap().to_owned();
        node.made = first_missing(&qos);
        std::fs::create_dir_all(&qos).unwrap();
        node
    }

    /// The kernel's directory of a path the node names `path`.
    pub(crate) fn dir(&self, path: &str) -> PathBuf {
        Path::new(MEMORY).join(format!("{}{path}", self.root).trim_start_matches('/'))
    }

    /// Starts the agent inside this node's view, in the node's `/agent`
    /// cgroup (the bare node's agent stays where the test runs).
    pub(crate) fn agent(&self) -> Agent {
        self.agent_in(true)
    }

    /// The agent in this node's view; `enter`: in the node's `/agent`
    /// cgroup, else (bind views) left in the test's cgroup, outside the
    /// view.
    pub(crate) fn agent_in(&self, enter: bool) -> Agent {
        let procs = if enter {
            self.dir("/agent").join("cgroup.procs")
        } else {
            PathBuf::from("/dev/null")
        };
        let agent = ["--no-cri", "--kube-api", "off"];
        let ro = |r: bool| if r { ",ro" } else { "" };
        let script = match self.view {
            View::Bare => "exec \"$@\"".to_owned(),
            // Enter the node's cgroup, then a cgroup namespace (rooted
            // there) and a mount namespace, and mount the hierarchy again.
            View::Namespace { read_only } => format!(
                "echo $$ > {node_procs} && exec unshare -C -m sh -c 'echo $$ > {procs} && \
                 umount {MEMORY} && mount -t cgroup -o memory{ro} cgroup {MEMORY} && \
                 exec \"$@\"' sh \"$@\"",
                node_procs = self.dir("").join("cgroup.procs").display(),
                procs = procs.display(),
                ro = ro(read_only),
            ),
            // Enter the agent's cgroup; bind the node's cgroup over the
            // hierarchy in a mount namespace of its own.
            View::Bind { read_only } => format!(
                "echo $$ > {procs} && exec unshare -m sh -c 'mount --bind {node} {MEMORY} && \
                 {remount} exec \"$@\"' sh \"$@\"",
                procs = procs.display(),
                node = self.dir("").display(),
                remount = if read_only {
                    format!("mount -o remount,bind,ro {MEMORY} &&")
                } else {
                    String::new()
                },
            ),
        };
        Agent::start_wrapped(&["sh", "-c", &script, "sh"], &agent)
    }

    /// Makes the pod and container cgroups (limit [`LIMIT`] on the
    /// container) and runs `stress` in the container until the kernel
    /// kills it; removes them again.
    pub(crate) fn oom_kill(&self, names: Names) {
        let (_, ctr) = names.paths();
        let dir = self.dir(&ctr);
        let made = first_missing(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), LIMIT.to_string()).unwrap();
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > \"$0\" && exec {} --step 5Mi --interval 5ms",
                stress().display()
            ))
            .arg(dir.join("cgroup.procs"))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!st.success(), "stress is OOM-killed in {}", dir.display());
        if let Some(made) = made {
            remove_up(&dir, &made);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.base.is_none() {
            if let Some(made) = &self.made {
                remove_tree(made);
            }
            return;
        }
        for names in [Names::Cgroupfs, Names::Systemd, Names::Kind] {
            let (pod, ctr) = names.paths();
            remove_up(&self.dir(&ctr), &self.dir(&pod));
        }
        let _ = std::fs::remove_dir(self.dir("/agent"));
        for top in [
            "/kubepods",
            "/kubepods.slice",
            "/kubelet.slice",
            "/oom-tracer",
        ] {
            remove_tree(&self.dir(top));
        }
        rmdir(&self.dir(""));
        if let Some(base) = &self.base {
            let _ = std::fs::remove_dir(base);
            let _ = std::fs::remove_dir(base.parent().unwrap());
        }
    }
}

/// The first of `dir` and its ancestors that does not exist yet.
fn first_missing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .take_while(|d| !d.exists())
        .last()
        .map(Path::to_owned)
}

/// Removes `dir` and its parents up to and with `top` (empty cgroups).
fn remove_up(dir: &Path, top: &Path) {
    let mut d = dir.to_owned();
    loop {
        rmdir(&d);
        if d == top || !d.pop() {
            return;
        }
    }
}

/// Removes a tree of empty cgroups, children first.
fn remove_tree(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    rmdir(dir);
}

/// rmdir, retried while the kernel still tears the last task down.
fn rmdir(dir: &Path) {
    let until = Instant::now() + Duration::from_secs(2);
    while dir.exists() && std::fs::remove_dir(dir).is_err() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The records of one container, normalised for comparison: `start`,
/// its `container_start`, `oom_kill` and `container_exit`.
pub(crate) fn of_container<'a>(recs: &'a [Value], ctr_path: &str) -> Vec<&'a Value> {
    recs.iter()
        .filter(|r| {
            let ev = r["event"].as_str().unwrap_or("");
            match ev {
                "container_start" => r["cgroup"] == ctr_path,
                "container_exit" => r["container"]["id"] == CTR_ID,
                "oom_kill" => r["victim_cgroup"] == ctr_path,
                _ => false,
            }
        })
        .collect()
}

/// Differences between two records of the same workload, times and
/// kernel ids aside: every field is compared; byte counts the kernel
/// measured at the kill within 2 MiB (one huge page), shares within 5
/// points, counters by their presence only; the cause's text up to its
/// first digit.
pub(crate) fn differences(at: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    let key = at.rsplit('.').next().unwrap_or("");
    match (want, got) {
        _ if IGNORED.contains(&key) => {}
        (Value::Number(_), Value::Number(_)) if key == "id" => {}
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                differences(&format!("{at}.{k}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{at}[{i}]"), x, y, out);
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            let slack = if PRESENCE.contains(&key) || at.contains(".events.") {
                f64::INFINITY
            } else if (key == "bytes" || key.ends_with("_bytes")) && !key.contains("limit") {
                (2 << 20) as f64
            } else if key.ends_with("_pct") {
                5.0
            } else {
                0.0
            };
            if (a - b).abs() > slack {
                out.push(format!("{at}: {a} on the bare node, {b} here"));
            }
        }
        (Value::String(a), Value::String(b)) if key == "text" => {
            let head = |s: &str| {
                s.split(|c: char| c.is_ascii_digit())
                    .next()
                    .map(str::to_owned)
            };
            if head(a) != head(b) {
                out.push(format!("{at}: {a:?} on the bare node, {b:?} here"));
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{at}: {a} on the bare node, {b} here")),
    }
}

/// Fields that differ from run to run by nature.
/// `callsites`: frame addresses differ per process (ASLR) and per load,
/// and whether a frame is named by the time its kill is written depends on
/// what the naming thread had read (the first run is colder); the view of
/// the cgroups plays no part in them, and `tests/callsites.rs` checks them.
const IGNORED: [&str; 7] = [
    "time",
    "pid",
    "tgid",
    "pressure",
    "ran_ms",
    "at",
    "callsites",
];
/// Counters whose value depends on the run; only their presence counts.
const PRESENCE: [&str; 2] = ["failcnt", "reclaims"];
