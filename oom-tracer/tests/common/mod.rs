//! Helpers for the privileged integration tests: they run the real
//! `oom-tracer` binary, which loads the real eBPF programs and OOM-kills the
//! real `stress` in real memory cgroups. They need root; without it they
//! fail and say so.
//!
//! Every test binary compiles all of `common/` and uses a different part of
//! it, so an item one binary leaves unused is dead code there and used in
//! another: `#[expect]` cannot be right for all of them. This is the one
//! module-wide allow of the workspace, for that reason only.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the shared helpers"
)]

pub(crate) mod agent;
pub(crate) mod apiserver;
pub(crate) mod cri_proxy;
pub(crate) mod deploy;
pub(crate) mod kubelet;
pub(crate) mod layout;
pub(crate) mod node;
pub(crate) mod oci;
pub(crate) mod pki;
pub(crate) mod podspec;
pub(crate) mod tmpfs;

use std::{
    io::BufRead as _,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use serde_json::Value;

pub(crate) const TRACER: &str = env!("CARGO_BIN_EXE_oom-tracer");

/// Fails the test, naming what is missing, unless we are root.
pub(crate) fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc_geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and creates memory cgroups: it needs root \
         (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and write access to the cgroup tree); run `sudo -E cargo xtask test`"
    );
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// The stress binary next to oom-tracer (cargo xtask test builds it).
pub(crate) fn stress() -> PathBuf {
    let p = PathBuf::from(TRACER).with_file_name("stress");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p stress` (cargo xtask test does)",
        p.display()
    );
    p
}

/// A unique cgroup parent per test, so parallel tests never share one.
pub(crate) fn parent(test: &str) -> String {
    format!("/oom-tracer-test/{test}-{}", std::process::id())
}

/// Runs `oom-tracer run` with `args` and returns (records, stderr, output).
pub(crate) fn run(args: &[&str]) -> (Vec<Value>, String, Output) {
    require_root();
    let out = Command::new(TRACER)
        .arg("run")
        .args(args)
        .env("OOM_TRACER_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("running oom-tracer");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    let records = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\nstderr:\n{stderr}"))
        })
        .collect();
    (records, stderr, out)
}

pub(crate) fn events<'a>(records: &'a [Value], name: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == name).collect()
}

/// Index of the first record at or after `from` matching `pred`.
pub(crate) fn find_from(
    records: &[Value],
    from: usize,
    pred: impl Fn(&Value) -> bool,
) -> Option<usize> {
    records.iter().skip(from).position(pred).map(|i| i + from)
}

/// Asserts the invariants every record has: v, event, RFC 3339 time.
pub(crate) fn check_envelope(records: &[Value]) {
    assert!(!records.is_empty(), "no records");
    for r in records {
        assert_eq!(r["v"], 1, "{r}");
        assert!(r["event"].is_string(), "{r}");
        let t = r["time"].as_str().unwrap_or_else(|| panic!("no time: {r}"));
        assert!(
            t.len() == 27 && t.ends_with('Z') && &t[10..11] == "T",
            "time {t:?} is not RFC 3339 UTC"
        );
    }
    assert_eq!(records[0]["event"], "start");
    assert_eq!(records.last().unwrap()["event"], "stop");
}

/// Whether a cgroup path still exists in the memory hierarchy (v1 or v2).
pub(crate) fn cgroup_exists(path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .any(|m| !rel.is_empty() && PathBuf::from(m).join(rel).exists())
}

/// Starts `oom-tracer run` holding a small workload; returns it once the
/// workload exec'd, with the records so far.
pub(crate) fn start_holding(
    parent: &str,
    extra: &[&str],
) -> (
    std::process::Child,
    Vec<Value>,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    let stress = stress();
    let mut child = Command::new(TRACER)
        .args(["run", "--cgroup-parent", parent])
        .args(extra)
        .arg("--")
        .arg(&stress)
        .args([
            "--step",
            "1Mi",
            "--interval",
            "10ms",
            "--max",
            "4Mi",
            "--hold",
            "120s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut recs = Vec::new();
    for line in lines.by_ref() {
        let r: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let exec = r["event"] == "exec";
        recs.push(r);
        if exec {
            break;
        }
    }
    (child, recs, lines)
}
