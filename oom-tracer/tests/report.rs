//! `oom-tracer report` on a real run: record an OOM cycle, draw it, and
//! read the SVG back.
mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use common::*;

/// A scratch directory of this test process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let d = std::env::temp_dir().join(format!("oom-tracer-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("creating a scratch directory");
        Self(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn report(input: &Path, svg: &Path) -> Output {
    Command::new(TRACER)
        .arg("report")
        .arg(input)
        .arg("--svg")
        .arg(svg)
        .env("OOM_TRACER_LOG", "info")
        .env_remove("OOM_TRACER_SVG")
        .stdin(Stdio::null())
        .output()
        .expect("running oom-tracer report")
}

/// Every `<text>` of the SVG, trimmed; fails unless it is well-formed SVG.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg)
        .unwrap_or_else(|e| panic!("the SVG is not well-formed XML: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_owned())
        .collect()
}

#[test]
fn report_draws_a_real_oom_cycle() {
    let parent = parent("report");
    let (recs, stderr, out) = run(&[
        "--backoff-initial",
        "200ms",
        "--max-restarts",
        "1",
        "--cgroup-parent",
        &parent,
    ]);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    check_envelope(&recs);
    assert_eq!(
        events(&recs, "oom_kill").len(),
        2,
        "the run itself: 2 kills"
    );

    let dir = Scratch::new("report");
    let input = dir.0.join("run.ndjson");
    let svg = dir.0.join("run.svg");
    std::fs::write(&input, &out.stdout).unwrap();
    let rep = report(&input, &svg);
    let rep_err = String::from_utf8_lossy(&rep.stderr);
    assert!(rep.status.success(), "report: {:?}\n{rep_err}", rep.status);
    assert!(
        !rep_err.contains("malformed"),
        "a real run has no malformed lines:\n{rep_err}"
    );
    assert!(rep.stdout.is_empty(), "report writes only the SVG");

    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    let texts = svg_texts(&text);
    let kills: Vec<_> = texts.iter().filter(|t| t.starts_with("OOM kill")).collect();
    assert_eq!(kills.len(), 2, "one kill marker per OOM kill: {texts:?}");
    assert!(
        kills.iter().all(|k| k.contains("stress")),
        "the victim is named: {kills:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("limit") && t.contains("50Mi")),
        "a limit line label: {texts:?}"
    );
    let backoffs: Vec<_> = texts.iter().filter(|t| t.ends_with(" back-off")).collect();
    assert_eq!(backoffs, ["200ms back-off"], "{texts:?}");
    assert_eq!(
        texts.iter().filter(|t| *t == "137 OOMKilled").count(),
        2,
        "an exit marker per attempt: {texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t == "default/stress · stress — 2 kills, 1 restart"),
        "the lane's title: {texts:?}"
    );
    // The call sites below the chart: a row per kill, naming stress's code.
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.starts_with("stress (pid "))
            .count(),
        2,
        "a row per kill in the call sites' table: {texts:?}"
    );
    assert!(
        texts.iter().filter(|t| t.contains("% stress::")).count() >= 2,
        "each kill's top site names stress's function: {texts:?}"
    );
}

#[test]
fn report_on_a_missing_input_fails_naming_it() {
    let dir = Scratch::new("report-missing");
    let input = dir.0.join("no-such-run.ndjson");
    let svg = dir.0.join("out.svg");
    let rep = report(&input, &svg);
    let stderr = String::from_utf8_lossy(&rep.stderr);
    assert!(!rep.status.success(), "a missing input is an error");
    assert!(
        stderr.contains(&input.display().to_string()),
        "stderr names the path:\n{stderr}"
    );
    assert!(!svg.exists(), "nothing written");

    // And an output that cannot be written.
    let input = dir.0.join("empty.ndjson");
    std::fs::write(&input, "").unwrap();
    let svg = dir.0.join("no-such-dir").join("out.svg");
    let rep = report(&input, &svg);
    let stderr = String::from_utf8_lossy(&rep.stderr);
    assert!(!rep.status.success());
    assert!(
        stderr.contains(&svg.display().to_string()),
        "stderr names the path:\n{stderr}"
    );
}
