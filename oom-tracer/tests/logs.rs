//! Diagnostics as log collectors get them: `oom-tracer run … 2>err.log`
//! (a file) and stderr as a pipe (a container's stderr). No escape
//! character ever reaches a file or a pipe, and in JSON every line is one
//! object: the diagnostics with `timestamp`, `level` and `message`, and
//! the workload's own output (`run` passes stress's stdout, its JSON step
//! lines, to stderr, so that stdout stays records only).
mod common;

use std::{
    io::Read as _,
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
};

use common::{TRACER, parent, require_root};
use serde_json::Value;

/// How stderr is connected.
enum Stderr {
    File,
    Pipe,
}

/// One `oom-tracer run` through one OOM kill, stderr to a file or a pipe;
/// returns its exit status and what it wrote on stderr.
fn run(name: &str, stderr: Stderr, extra: &[&str]) -> (ExitStatus, Vec<u8>) {
    require_root();
    let cgroup_parent = parent(name);
    let mut cmd = Command::new(TRACER);
    cmd.args(["run", "--memory-limit", "50Mi", "--max-restarts", "0"])
        .args(["--cgroup-parent", &cgroup_parent])
        .args(extra)
        .env("OOM_TRACER_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("OOM_TRACER_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match stderr {
        Stderr::File => {
            let path: PathBuf = std::env::temp_dir()
                .join(format!("oom-tracer-{name}-{}.err.log", std::process::id()));
            cmd.stderr(std::fs::File::create(&path).unwrap());
            let st = cmd.status().expect("running oom-tracer");
            let log = std::fs::read(&path).unwrap();
            let _ = std::fs::remove_file(&path);
            (st, log)
        }
        Stderr::Pipe => {
            cmd.stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("running oom-tracer");
            let mut log = Vec::new();
            child.stderr.take().unwrap().read_to_end(&mut log).unwrap();
            (child.wait().unwrap(), log)
        }
    }
}

fn assert_no_escapes(log: &[u8], what: &str) {
    assert!(!log.is_empty(), "{what}: nothing on stderr");
    assert!(
        !log.contains(&0x1b),
        "{what}: escape characters on stderr:\n{}",
        String::from_utf8_lossy(log)
    );
}

/// Every line is a JSON object: a diagnostic (time, level and message) or
/// a line of stress's own output (`event`). Returns the diagnostics.
fn assert_json_lines(log: &[u8], what: &str) -> Vec<Value> {
    let text = String::from_utf8(log.to_vec()).expect("stderr is UTF-8");
    let mut diagnostics = Vec::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("{what}: a stderr line is not JSON ({e}): {l:?}"));
        assert!(v.is_object(), "{what}: not an object: {l}");
        if v.get("level").is_some() {
            for key in ["timestamp", "level", "message"] {
                assert!(v[key].is_string(), "{what}: no {key} in {l}");
            }
            diagnostics.push(v);
        } else {
            assert!(
                v["event"].is_string(),
                "{what}: neither a diagnostic nor stress's: {l}"
            );
        }
    }
    assert!(!diagnostics.is_empty(), "{what}: no diagnostics:\n{text}");
    diagnostics
}

/// `2>err.log` with `--log-format json`: every line parses as JSON, and the
/// startup line is among them.
#[test]
fn json_to_a_file() {
    let (st, log) = run("logs-json", Stderr::File, &["--log-format", "json"]);
    assert!(st.success(), "{st:?}\n{}", String::from_utf8_lossy(&log));
    assert_no_escapes(&log, "--log-format json 2>file");
    let lines = assert_json_lines(&log, "--log-format json 2>file");
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("hooks active"))),
        "no startup line: {lines:#?}"
    );
}

/// `2>err.log` with no format given: not a terminal, so JSON.
#[test]
fn default_to_a_file_is_json() {
    let (st, log) = run("logs-default", Stderr::File, &[]);
    assert!(st.success(), "{st:?}\n{}", String::from_utf8_lossy(&log));
    assert_no_escapes(&log, "2>file");
    assert_json_lines(&log, "2>file");
}

/// `--log-format text` to a file: text, without colour.
#[test]
fn text_to_a_file_has_no_colour() {
    let (st, log) = run("logs-text", Stderr::File, &["--log-format", "text"]);
    assert!(st.success(), "{st:?}\n{}", String::from_utf8_lossy(&log));
    assert_no_escapes(&log, "--log-format text 2>file");
    let text = String::from_utf8_lossy(&log);
    let startup = text
        .lines()
        .find(|l| l.contains("hooks active"))
        .unwrap_or_else(|| panic!("no startup line:\n{text}"));
    assert!(startup.contains("INFO"), "{startup}");
    assert!(
        serde_json::from_str::<Value>(startup).is_err(),
        "--log-format text wrote JSON: {startup}"
    );
}

/// A pipe, as a container's stderr: JSON by default.
#[test]
fn default_to_a_pipe_is_json() {
    let (st, log) = run("logs-pipe", Stderr::Pipe, &[]);
    assert!(st.success(), "{st:?}\n{}", String::from_utf8_lossy(&log));
    assert_no_escapes(&log, "2>|pipe");
    assert_json_lines(&log, "2>|pipe");
}
