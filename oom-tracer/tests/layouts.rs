//! The agent on the node layouts people run, built on this machine with
//! namespaces and mounts (`common/layout.rs`): the bare node; a node in a
//! container whose view is a cgroup namespace or a bind mount of its
//! sub-cgroup, each read-only and writable; the kubelet's cgroupfs,
//! systemd and kind names on each. The same workload (`stress` OOM-killed
//! under a 50Mi container limit) must give, on every view, the bare
//! node's records field for field (times, pids and kernel ids aside):
//! pod, container, memcg path, level, limit, breakdown, tasks, cause. The
//! agent must come up on every view, never leave its own cgroup, and have
//! its startup check pass.
mod common;

use common::{layout::*, *};
use serde_json::Value;

/// The layouts share the bare node's kubepods tree and the node cgroups'
/// names: one test at a time (`cargo xtask test` runs two threads).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The records of one workload on `view`, with the agent's checks.
fn records_on(view: View, names: Names) -> Vec<Value> {
    require_root();
    let node = Node::new(view, names);
    let agent = node.agent();
    let own = || std::fs::read_to_string(format!("/proc/{}/cgroup", agent.pid())).unwrap();
    let cgroup_at_start = own();
    // The check runs beside the tracing: wait for its verdict, so that
    // the kill is compared with the breakdown on.
    let check = verdict(&agent, view);
    assert_eq!(
        check["enabled"],
        true,
        "{view:?}: {check:#}\n{}",
        agent.stderr_text()
    );
    node.oom_kill(names);
    assert_eq!(own(), cgroup_at_start, "{view:?}: the agent changed cgroup");
    let stderr = agent.stderr_text();
    let recs = agent.stop();
    assert_eq!(recs[0]["event"], "start", "{view:?}");
    assert_eq!(recs[0]["breakdown"]["checking"], true, "{view:?}");
    let (_, ctr) = names.paths();
    let mine: Vec<Value> = of_container(&recs, &ctr).into_iter().cloned().collect();
    let kinds: Vec<&str> = mine.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["container_start", "oom_kill", "container_exit"],
        "{view:?}, {names:?}: {recs:#?}\n{stderr}"
    );
    let kill = &mine[1];
    assert_eq!(kill["memcg"]["path"], ctr.as_str(), "{kill:#}");
    assert_eq!(kill["memcg"]["limit_bytes"], LIMIT, "{kill:#}");
    assert_eq!(kill["pod"]["uid"], POD_UID, "{kill:#}");
    assert!(kill["breakdown"].is_object(), "{view:?}: {kill:#}");
    assert_eq!(kill["cause"]["part"], "anon", "{view:?}: {kill:#}");
    mine
}

/// The startup check's verdict, once it has come (at most 10 s).
fn verdict(agent: &agent::Agent, view: View) -> Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(c) = agent
            .records()
            .into_iter()
            .find(|r| r["event"] == "breakdown_check")
        {
            return c;
        }
        assert!(
            std::time::Instant::now() < until,
            "{view:?}: no breakdown_check record in 10 s:\n{}",
            agent.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Every view against the bare node, for one way of naming the pods.
fn every_view(names: Names) {
    let _g = serial();
    let bare = records_on(View::Bare, names);
    let mut problems = Vec::new();
    for view in &View::ALL[1..] {
        let here = records_on(*view, names);
        for (want, got) in bare.iter().zip(&here) {
            let mut diffs = Vec::new();
            differences(want["event"].as_str().unwrap(), want, got, &mut diffs);
            problems.extend(diffs.into_iter().map(|d| format!("{view:?}: {d}")));
        }
    }
    assert!(
        problems.is_empty(),
        "{names:?}: records differ from the bare node's:\n{}",
        problems.join("\n")
    );
}

#[test]
fn cgroupfs_names_give_the_bare_nodes_records_on_every_view() {
    every_view(Names::Cgroupfs);
}

#[test]
fn systemd_names_give_the_bare_nodes_records_on_every_view() {
    every_view(Names::Systemd);
}

#[test]
fn kind_names_give_the_bare_nodes_records_on_every_view() {
    every_view(Names::Kind);
}

/// A startup check that cannot run (the agent's own cgroup is outside a
/// read-only view, so its child has nowhere to be compared) costs the
/// breakdown only: the agent says why, in its log and in the verdict, and
/// still reports the kill with its pod, container, path and limit.
#[test]
fn a_check_that_cannot_run_costs_only_the_breakdown() {
    require_root();
    let _g = serial();
    let names = Names::Cgroupfs;
    let view = View::Bind { read_only: true };
    let node = Node::new(view, names);
    let agent = node.agent_in(false);
    let check = verdict(&agent, view);
    // The log line comes with the record.
    std::thread::sleep(std::time::Duration::from_millis(200));
    node.oom_kill(names);
    let stderr = agent.stderr_text();
    let recs = agent.stop();
    assert_eq!(check["enabled"], false, "{check:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("is not in the cgroup hierarchy"),
        "{detail}"
    );
    assert!(
        detail.contains("no probe cgroup") && detail.contains("Read-only"),
        "{detail}"
    );
    assert!(
        stderr.contains("memory breakdown at OOM kills: off"),
        "{stderr}"
    );
    let (_, ctr) = names.paths();
    let kill = of_container(&recs, &ctr)
        .into_iter()
        .find(|r| r["event"] == "oom_kill")
        .unwrap_or_else(|| panic!("no kill in {ctr}: {recs:#?}"));
    assert_eq!(kill["memcg"]["path"], ctr.as_str(), "{kill:#}");
    assert_eq!(kill["memcg"]["limit_bytes"], LIMIT, "{kill:#}");
    assert_eq!(kill["pod"]["uid"], POD_UID, "{kill:#}");
    assert!(
        kill["breakdown"].is_null() && kill["cause"].is_null(),
        "{kill:#}"
    );
}

/// `/oom-tracer`, where the startup check makes its probe cgroup, is
/// oom-tracer's own: an agent removes it when its probe leaves it empty,
/// also where another agent made it (two agents starting together each
/// left it to the other).
#[test]
fn the_probe_parent_goes_when_it_is_left_empty() {
    require_root();
    let _g = serial();
    let view = View::Namespace { read_only: false };
    let node = Node::new(view, Names::Cgroupfs);
    let parent = node.dir("/oom-tracer");
    // As another agent would have made it.
    std::fs::create_dir(&parent).unwrap();
    let agent = node.agent();
    let check = verdict(&agent, view);
    assert_eq!(check["enabled"], true, "{check:#}\n{}", agent.stderr_text());
    let stderr = agent.stderr_text();
    agent.stop();
    assert!(
        !parent.exists(),
        "{} was left behind:\n{stderr}",
        parent.display()
    );
}
