//! `--workload-output`: the workload's own lines (stress's
//! `{"event":"step",…}`) stay out of the pretty timeline, go to stderr
//! with JSON records, or to the file asked for; a file that cannot be
//! opened is a clear error before anything is created.
mod common;

use std::process::{Command, Output, Stdio};

use common::*;

const STEP: &str = r#"{"event":"step""#;

/// `oom-tracer run` of a quick stress (one OOM kill under 20Mi, no restart).
fn run_quick(parent: &str, extra: &[&str]) -> (Output, String, String) {
    require_root();
    let out = Command::new(TRACER)
        .args(["run", "--memory-limit", "20Mi", "--max-restarts", "0"])
        .args(["--cgroup-parent", parent])
        .args(extra)
        .env("OOM_TRACER_LOG", "info")
        .env("OOM_TRACER_LOG_FORMAT", "text")
        .env_remove("OOM_TRACER_WORKLOAD_OUTPUT")
        .stdin(Stdio::null())
        .output()
        .expect("running oom-tracer");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    assert!(!cgroup_exists(parent), "{parent} was left behind");
    (out, stdout, stderr)
}

fn stress_args(stress: &str) -> [&str; 6] {
    ["--", stress, "--step", "4Mi", "--interval", "10ms"]
}

/// The file the startup line names: `… goes to <path> (…`.
fn named_file(stderr: &str) -> std::path::PathBuf {
    let line = stderr
        .lines()
        .find(|l| l.contains("the workload's output goes to "))
        .unwrap_or_else(|| panic!("no line names the workload's output:\n{stderr}"));
    let rest = line.split("goes to ").nth(1).unwrap();
    rest.split(" (").next().unwrap().trim().into()
}

/// Pretty timeline by default: the workload's lines go to a new file in
/// the temporary directory, named once on stderr; stdout is the timeline
/// only and stderr has none of them.
#[test]
fn pretty_timeline_keeps_the_workload_output_in_a_named_file() {
    let stress = stress();
    let stress = stress.to_str().unwrap();
    let parent = parent("wout-pretty");
    let mut args = vec!["--format", "pretty"];
    args.extend(stress_args(stress));
    let (_, stdout, stderr) = run_quick(&parent, &args);
    assert!(stdout.contains("OOM KILL"), "the timeline:\n{stdout}");
    assert!(!stdout.contains(STEP), "the timeline:\n{stdout}");
    assert!(!stderr.contains(STEP), "stderr:\n{stderr}");
    let file = named_file(&stderr);
    assert!(
        file.starts_with(std::env::temp_dir())
            && file
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("oom-tracer-workload-"),
        "{}",
        file.display()
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    std::fs::remove_file(&file).unwrap();
    assert!(
        text.lines().filter(|l| l.starts_with(STEP)).count() >= 2,
        "{text}"
    );
    assert_eq!(mode & 0o777, 0o600, "the file is its owner's only");
}

/// JSON records: as before, the workload's lines on stderr, stdout records only.
#[test]
fn json_records_leave_the_workload_output_on_stderr() {
    let stress = stress();
    let json_parent = parent("wout-json");
    let (_, stdout, stderr) = run_quick(&json_parent, &stress_args(stress.to_str().unwrap()));
    assert!(stderr.contains(STEP), "stderr:\n{stderr}");
    assert!(
        !stderr.contains("the workload's output goes to"),
        "{stderr}"
    );
    for l in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["v"] == 1, "{l}");
    }
    // And `stderr` asked for with the timeline: there too.
    let parent = parent("wout-stderr");
    let mut args = vec!["--format", "pretty", "--workload-output", "stderr"];
    args.extend(stress_args(stress.to_str().unwrap()));
    let (_, stdout, stderr) = run_quick(&parent, &args);
    assert!(stderr.contains(STEP), "stderr:\n{stderr}");
    assert!(!stdout.contains(STEP), "{stdout}");
}

/// A path given: truncated at the start, and every attempt of the
/// container writes to it, one after the other.
#[test]
fn a_file_given_gets_every_attempt() {
    require_root();
    let stress = stress();
    let dir = std::env::temp_dir().join(format!("oom-tracer-wout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("workload.log");
    std::fs::write(&file, "from before\n").unwrap();
    let parent = parent("wout-file");
    let out = Command::new(TRACER)
        .args(["run", "--memory-limit", "20Mi", "--max-restarts", "1"])
        .args(["--backoff-initial", "100ms", "--cgroup-parent", &parent])
        .arg("--workload-output")
        .arg(&file)
        .args(stress_args(stress.to_str().unwrap()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(STEP), "stderr:\n{stderr}");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!text.contains("from before"), "truncated:\n{text}");
    let firsts = text
        .lines()
        .filter(|l| l.starts_with(STEP) && l.contains(r#""step":1,"#))
        .count();
    assert_eq!(firsts, 2, "two attempts, each from its first step:\n{text}");
}

/// A file that cannot be opened: exit 1 naming it, nothing on stdout, and
/// no root needed (it is checked before anything is loaded or created).
#[test]
fn an_unopenable_file_is_a_clear_error() {
    let out = Command::new(TRACER)
        .args(["run", "--workload-output", "/nonexistent-dir/w.log"])
        .args(["--", "true"])
        .env("OOM_TRACER_LOG_FORMAT", "text")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent-dir/w.log") && stderr.contains("--workload-output"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
