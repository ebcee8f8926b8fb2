//! The command line: bad input, `check`, and stopping on a signal.
mod common;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

#[test]
fn bad_memory_limit_is_a_usage_error() {
    let out = Command::new(TRACER)
        .args(["run", "--memory-limit", "banana"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("banana") && err.contains("--memory-limit"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn bad_env_value_is_a_usage_error() {
    let out = Command::new(TRACER)
        .args(["run"])
        .env("OOM_TRACER_BACKOFF_INITIAL", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));
}

#[test]
fn check_reports_every_hook() {
    require_root();
    let out = Command::new(TRACER)
        .args(["check", "--format", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["btf"], true);
    let active: Vec<&str> = report["hooks"]["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for hook in [
        "tp_btf/mark_victim",
        "tp_btf/signal_generate",
        "tp_btf/sched_process_exec",
        "tp_btf/sched_process_exit",
        "tracepoint/kmem/rss_stat",
        "tracepoint/cgroup/cgroup_mkdir",
        "tracepoint/cgroup/cgroup_rmdir",
        "tracepoint/cgroup/cgroup_attach_task",
    ] {
        assert!(active.contains(&hook), "{hook} not active: {report}");
    }
    assert!(report["cgroup_version"] == "v1" || report["cgroup_version"] == "v2");
}

/// SIGTERM while the workload runs: the workload is stopped, the cgroups
/// are removed, and the last record says why it stopped.
#[test]
fn sigterm_stops_cleanly() {
    require_root();
    let parent = parent("sigterm");
    let stress = stress();
    let mut child = Command::new(TRACER)
        .args([
            "run",
            "--cgroup-parent",
            &parent,
            "--memory-limit",
            "100Mi",
            "--",
        ])
        .arg(&stress)
        .args([
            "--step",
            "1Mi",
            "--interval",
            "50ms",
            "--max",
            "8Mi",
            "--hold",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut cgroup = String::new();
    for line in lines.by_ref() {
        let r: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if r["event"] == "exec" {
            cgroup = r["cgroup"].as_str().unwrap().to_owned();
            break;
        }
    }
    assert!(cgroup_exists(&cgroup), "{cgroup} exists while running");
    // SAFETY: plain syscall on our child.
    unsafe { libc_kill(child.id() as i32, 15) };
    let t = Instant::now();
    let rest: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let status = child.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let stop = rest.last().expect("records after SIGTERM");
    assert_eq!(stop["event"], "stop");
    assert_eq!(stop["reason"], "signal SIGTERM");
    assert!(
        rest.iter()
            .any(|r| r["event"] == "container_exit" && r["exit_code"] == 137)
    );
    assert!(!cgroup_exists(&cgroup), "{cgroup} removed");
    assert!(!cgroup_exists(&parent), "{parent} removed");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
