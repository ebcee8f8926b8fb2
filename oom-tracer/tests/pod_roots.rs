//! A pod root (`kubepods`) made while the agent runs: the kubelet started
//! after the agent, or restarted with its runtime. The kernel traces the
//! processes under a root only once the agent has read the root's mkdir,
//! so a container whose first process starts at once is found in the
//! cgroup tree instead, and its OOM kill names its pod and container.
mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{agent::Agent, *};
use serde_json::Value;

const POD_UID: &str = "4f1c2b3a-5d6e-4f70-8a9b-0c1d2e3f4a5b";
const CONTAINER_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// The memory hierarchy's mount: v1's memory controller, else v2.
fn memory_mount() -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").exists() {
        return v1.to_owned();
    }
    let v2 = Path::new("/sys/fs/cgroup");
    assert!(
        v2.join("cgroup.controllers").exists(),
        "no memory cgroup hierarchy at /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup (v2)"
    );
    v2.to_owned()
}

/// Removes the test's cgroups, deepest first, however the test ends.
struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let mut dirs: Vec<PathBuf> = walk(&self.0);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn a_container_under_a_pod_root_made_later_is_named_at_its_kill() {
    require_root();
    let mount = memory_mount();
    let base = parent("late-root");
    let root = mount.join(base.trim_start_matches('/'));
    let _tree = Tree(root.clone());
    // No runtime, no API, no rescan during the test: only the root's
    // mkdir tells the agent about it.
    let agent = Agent::start_with(&["--no-cri", "--kube-api", "off", "--rescan-interval", "1h"]);
    let container = format!("{base}/kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}");
    // The cgroups and the container's process at once, as a runtime makes
    // them: the process execs before the agent has read the root's mkdir.
    let script = r#"
        set -e
        d="$1$2"
        mkdir -p "$d"
        if [ -e "$d/memory.limit_in_bytes" ]; then
            echo 40M > "$d/memory.limit_in_bytes"
        else
            p="$1"
            for part in $(echo "${2#/}" | tr / ' '); do
                echo +memory > "$p/cgroup.subtree_control"
                p="$p/$part"
            done
            echo 40M > "$d/memory.max"
        fi
        echo $$ > "$d/cgroup.procs"
        exec "$3" --step 1Mi --interval 15ms
    "#;
    // The agent is stopped meanwhile, so that it reads the root's mkdir
    // only once the process runs (a runtime is that fast now and then).
    signal(agent.pid(), SIGSTOP);
    let mut process = Command::new("bash")
        .args(["-c", script, "late-root"])
        .arg(&mount)
        .arg(&container)
        .arg(stress())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("running the container's process");
    let started = wait_until(|| comm(process.id()).as_deref() == Some("stress"));
    signal(agent.pid(), SIGCONT);
    assert!(started, "the container's process did not start");
    let status = process.wait().expect("waiting for the container's process");
    assert_eq!(
        status.code(),
        None,
        "the process was not killed: {status:?}"
    );
    let kill = wait_for_kill(&agent, CONTAINER_ID);
    let recs = agent.stop();
    let kill = kill.unwrap_or_else(|| panic!("no oom_kill in {container}: {recs:#?}"));
    assert_eq!(kill["pod"]["uid"], POD_UID, "{kill:#}");
    assert_eq!(kill["container"]["id"], CONTAINER_ID, "{kill:#}");
    let started = recs
        .iter()
        .find(|r| r["event"] == "container_start" && r["container"]["id"] == CONTAINER_ID)
        .unwrap_or_else(|| panic!("no container_start: {recs:#?}"));
    assert_eq!(started["discovered"], true, "{started:#}");
}

const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: a plain syscall on our own child.
    let rc = unsafe { kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

fn comm(pid: u32) -> Option<String> {
    let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(c.trim().to_owned())
}

/// Polls `ok` for at most 10 s.
fn wait_until(mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The `oom_kill` of the container `id`, waited for at most 20 s.
fn wait_for_kill(agent: &Agent, id: &str) -> Option<Value> {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let kill = agent.records().into_iter().find(|r| {
            r["event"] == "oom_kill" && r["memcg"]["path"].as_str().is_some_and(|p| p.ends_with(id))
        });
        if kill.is_some() {
            return kill;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
