//! What the DaemonSet test reads back and checks: the agent's memory, its
//! read-only mounts, its CRI log as JSON lines, and its records of the
//! example pod.

use std::path::Path;

use serde_json::{Value, json};

use crate::{
    common::{
        node::{self, LogLine},
        podspec::PodPlan,
    },
    lifecycle::KILLS,
};

/// The agent's process (a host pid: hostPID), its resident memory (KiB)
/// and its memcg's usage (bytes), from the container's memory cgroup.
pub(crate) fn agent_memory(plan: &PodPlan, id: &str) -> (u32, u64, u64) {
    let memcg = node::memcg_dir(plan, id);
    let pid: u32 = std::fs::read_to_string(memcg.join("cgroup.procs"))
        .unwrap()
        .lines()
        .next()
        .expect("the agent's process")
        .parse()
        .unwrap();
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap();
    let usage = node::read_u64(&memcg.join("memory.usage_in_bytes"))
        .or_else(|| node::read_u64(&memcg.join("memory.current")))
        .unwrap();
    (pid, rss_kib, usage)
}

/// Every read-only mount of the container is read-only in its mount
/// table. Returns the mounts beneath them that stay writable (the runtime
/// makes only the mount point read-only unless it supports recursive
/// read-only mounts, and then there must be none).
pub(crate) fn check_read_only(plan: &PodPlan, pid: u32, recursive: bool) -> Vec<String> {
    let table = node::mounts(pid);
    let ro = |opts: &str| opts.split(',').any(|o| o == "ro");
    let mut writable = Vec::new();
    for m in plan.containers[0]
        .config
        .mounts
        .iter()
        .filter(|m| m.readonly)
    {
        let top = table
            .iter()
            .rfind(|(p, _)| *p == m.container_path)
            .unwrap_or_else(|| panic!("{} is not mounted: {table:?}", m.container_path));
        assert!(ro(&top.1), "{} is mounted {}", m.container_path, top.1);
        let prefix = format!("{}/", m.container_path);
        writable.extend(
            table
                .iter()
                .filter(|(p, o)| p.starts_with(&prefix) && !ro(o))
                .map(|(p, _)| p.clone()),
        );
    }
    assert!(
        !recursive || writable.is_empty(),
        "the runtime supports recursive read-only mounts, yet these stay writable: {writable:?}"
    );
    writable
}

/// Every line of a CRI log as JSON: (stdout records, stderr diagnostics).
pub(crate) fn json_lines(path: &Path) -> (Vec<Value>, Vec<Value>) {
    let (lines, raw) = node::read_log(path);
    assert!(
        !raw.contains(&0x1b),
        "{}: the agent's log holds escape characters",
        path.display()
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for LogLine {
        stream, content, ..
    } in lines
    {
        let v: Value = serde_json::from_str(&content).unwrap_or_else(|e| {
            panic!(
                "{}: a {stream} line is not JSON ({e}): {content:?}",
                path.display()
            )
        });
        assert!(
            v.is_object(),
            "{}: not a JSON object: {content}",
            path.display()
        );
        match stream.as_str() {
            "stdout" => out.push(v),
            "stderr" => err.push(v),
            other => panic!("{}: stream {other}", path.display()),
        }
    }
    (out, err)
}

/// The records of `event` about the pod `uid`.
fn for_pod<'a>(records: &'a [Value], event: &str, uid: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["event"] == event && r["pod"]["uid"] == uid)
        .collect()
}

/// The agent's records about the example pod `uid`: its start on cgroup
/// `version` with the memory breakdown on, each kill and each exit, with
/// the pod's identity, the restart count, the memcg (the node's path), the
/// limit, the breakdown, the cause, the task list and the verdict.
pub(crate) fn check_records(records: &[Value], version: &str, uid: &str, attempts: &[String]) {
    let start = &records[0];
    assert_eq!(start["event"], "start", "{start}");
    assert_eq!(records.last().map(|r| &r["event"]), Some(&json!("stop")));
    assert_eq!(start["mode"], "agent", "{start}");
    assert_eq!(start["cgroup_version"], version, "{start}");
    let verdict = breakdown_verdict(records);
    assert_eq!(
        verdict["enabled"], true,
        "the memory breakdown's startup check: {verdict:#}"
    );
    let kills = for_pod(records, "oom_kill", uid);
    assert_eq!(kills.len(), KILLS as usize, "{kills:#?}");
    for (i, kill) in kills.iter().enumerate() {
        assert_eq!(kill["pod"]["namespace"], "default", "{kill}");
        assert_eq!(kill["pod"]["name"], "oom-example", "{kill}");
        assert_eq!(kill["container"]["name"], "stress", "{kill}");
        assert_eq!(kill["container"]["id"], attempts[i].as_str(), "{kill}");
        assert_eq!(kill["container"]["restart_count"], i, "{kill}");
        // The node's own paths, as the kubelet (cgroupfs driver) names
        // them. The pod's limit is its one container's (50Mi), and the pod
        // cgroup also holds the pause container, so the kernel may find
        // either at its limit first: the record must name the one it did.
        let pod = format!("/kubepods/burstable/pod{uid}");
        let container = format!("{pod}/{}", attempts[i]);
        assert_eq!(kill["victim_cgroup"], container.as_str(), "{kill}");
        let level = kill["memcg"]["level"].as_str().unwrap_or_default();
        let path = match level {
            "container" => &container,
            "pod" => &pod,
            other => panic!("the limit hit is the container's or the pod's, not {other:?}: {kill}"),
        };
        assert_eq!(kill["memcg"]["path"], path.as_str(), "{kill}");
        assert_eq!(kill["memcg"]["limit_bytes"], 52428800, "{kill}");
        check_why(kill, version == "v1" && level == "pod");
        eprintln!("kill {i}: the {level}'s limit, {}", kill["cause"]["text"]);
    }
    let exits = for_pod(records, "container_exit", uid);
    assert_eq!(exits.len(), KILLS as usize, "{exits:#?}");
    for (i, exit) in exits.iter().enumerate() {
        assert_eq!(exit["container"]["restart_count"], i, "{exit}");
        assert_eq!(exit["exit_code"], 137, "{exit}");
        assert_eq!(exit["reason"], "OOMKilled", "{exit}");
        assert_eq!(exit["verdict"], "memcg_oom", "{exit}");
    }
}

/// The verdict of the breakdown's startup check: `start.breakdown`, or,
/// while that says `checking`, the `breakdown_check` record that follows.
pub(crate) fn breakdown_verdict(records: &[Value]) -> &Value {
    let at_start = &records[0]["breakdown"];
    if at_start["checking"] != true {
        return at_start;
    }
    records
        .iter()
        .find(|r| r["event"] == "breakdown_check")
        .unwrap_or_else(|| panic!("start says checking, and no breakdown_check record follows"))
}

fn bytes(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a byte count: {v}"))
}

/// Why the example pod died, as each kill must say it: the breakdown
/// (its parts add up to the usage within a huge page, nearly all of it
/// anonymous memory, the memcg's events count the OOM and the kill), the
/// cause (anonymous memory) and the task list naming the victim. A v1
/// memcg counts a kill only where the victim's task is (`above_victim`:
/// the kill is in a child), v2 also in the ancestors.
fn check_why(kill: &Value, above_victim: bool) {
    const MIB: u64 = 1 << 20;
    let b = &kill["breakdown"];
    assert!(b.is_object(), "the kill carries no breakdown: {kill:#}");
    let usage = bytes(&kill["memcg"]["usage_bytes"]);
    let parts: u64 = ["anon_bytes", "file_bytes", "shmem_bytes", "kernel_bytes"]
        .iter()
        .map(|k| bytes(&b[k]))
        .sum::<u64>()
        + b["sock_bytes"].as_u64().unwrap_or(0);
    // The kernel flushes a memcg's statistics for its OOM report, which is
    // rate-limited: after many kills in a row (the whole test suite) the
    // numbers may lag, and the record says so (`pending_updates`, 0 when
    // exact). Exact numbers must add up; lagging ones must not exceed.
    if b["pending_updates"].as_u64() == Some(0) {
        assert!(
            parts.abs_diff(usage) <= 2 * MIB,
            "breakdown parts {parts} vs usage {usage}: {b:#}"
        );
        assert!(bytes(&b["anon_bytes"]) > 40 * MIB, "{b:#}");
    } else {
        assert!(
            parts <= usage + 2 * MIB,
            "breakdown parts {parts} vs usage {usage}: {b:#}"
        );
        assert!(bytes(&b["anon_bytes"]) > 0, "{b:#}");
    }
    assert!(
        bytes(&b["events"]["oom"]) >= 1,
        "the memcg the record names ({} {}) counts no OOM in its memory.events: the kernel's OOM \
         was in another memcg: {b:#}",
        kill["memcg"]["level"],
        kill["memcg"]["path"]
    );
    assert!(
        above_victim || bytes(&b["events"]["oom_kill"]) >= 1,
        "{b:#}"
    );
    let cause = &kill["cause"];
    assert_eq!(cause["part"], "anon", "{cause:#}");
    assert!(
        cause["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("anonymous memory ")),
        "{cause:#}"
    );
    let victim = kill["victim"]["pid"].clone();
    let tasks = kill["tasks"].as_array().expect("a task list");
    assert!(
        tasks
            .iter()
            .any(|t| t["victim"] == true && t["comm"] == "stress" && t["pid"] == victim),
        "the task list does not name the victim {victim}: {tasks:#?}"
    );
}
