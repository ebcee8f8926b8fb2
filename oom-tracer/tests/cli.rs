//! The command line: bad input, `check`, and stopping on a signal.
mod common;

use std::process::Command;

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
        "tp_btf/rss_stat",
        "tp_btf/cgroup_mkdir",
        "tp_btf/cgroup_rmdir",
        "tp_btf/cgroup_attach_task",
    ] {
        assert!(active.contains(&hook), "{hook} not active: {report}");
    }
    assert!(report["cgroup_version"] == "v1" || report["cgroup_version"] == "v2");
}
