//! The whole cycle, for real: allocation ramp → memcg limit → OOM kill →
//! SIGKILL/137 → kubelet-style restart with back-off.
mod common;

use common::*;
use serde_json::Value;

/// The container-level limit: records come in order, the kill names the
/// container cgroup and its 50Mi limit, and the back-off doubles.
#[test]
fn container_limit_oom_cycle() {
    let parent = parent("container");
    let (recs, stderr, out) = run(&[
        "--memory-limit",
        "50Mi",
        "--backoff-initial",
        "200ms",
        "--backoff-max",
        "10s",
        "--max-restarts",
        "3",
        "--cgroup-parent",
        &parent,
    ]);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    check_envelope(&recs);
    assert!(
        stderr.contains("hooks active: tp_btf/mark_victim"),
        "startup line names the hooks:\n{stderr}"
    );

    let starts = events(&recs, "container_start");
    assert_eq!(starts.len(), 4, "first run + 3 restarts");
    // Walk the records in order for each attempt.
    let mut at = 0;
    for (attempt, start) in starts.iter().enumerate() {
        let cgroup = start["cgroup"].as_str().unwrap();
        assert_eq!(start["container"]["restart_count"], attempt as u64);
        assert_eq!(start["memory_limit_bytes"], 52428800);
        let in_ctr = |r: &Value| r["cgroup"] == cgroup;
        let exec = find_from(&recs, at, |r| r["event"] == "exec" && in_ctr(r))
            .unwrap_or_else(|| panic!("attempt {attempt}: no exec in {cgroup}"));
        assert_eq!(recs[exec]["comm"], "stress");
        let pid = recs[exec]["pid"].clone();
        let allocs: Vec<_> = recs
            .iter()
            .skip(exec)
            .take_while(|r| r["event"] != "oom_kill")
            // The process's own ramp; `file`/`shmem` steps are the cgroup's.
            .filter(|r| r["event"] == "alloc" && r["kind"] == "anon" && r["pid"] == pid)
            .collect();
        assert!(
            allocs.len() >= 3,
            "attempt {attempt}: allocation ramp has {} steps",
            allocs.len()
        );
        let sizes: Vec<u64> = allocs
            .iter()
            .map(|r| r["anon_rss_bytes"].as_u64().unwrap())
            .collect();
        assert!(
            sizes.windows(2).all(|w| w[0] < w[1]),
            "ramp grows: {sizes:?}"
        );
        let oom = find_from(&recs, exec, |r| r["event"] == "oom_kill")
            .unwrap_or_else(|| panic!("attempt {attempt}: no oom_kill"));
        let o = &recs[oom];
        assert_eq!(o["kind"], "memcg");
        assert_eq!(o["victim"]["comm"], "stress");
        assert_eq!(o["victim"]["pid"], pid);
        assert!(
            o["victim"]["anon_rss_bytes"].as_u64().unwrap() > 40 << 20,
            "{o}"
        );
        assert!(o["victim"]["oom_score_adj"].is_i64(), "{o}");
        assert_eq!(o["trigger"]["comm"], "stress");
        assert_eq!(o["memcg"]["path"], cgroup);
        assert_eq!(o["memcg"]["level"], "container");
        assert_eq!(o["memcg"]["limit_bytes"], 52428800);
        let usage = o["memcg"]["usage_bytes"].as_u64().unwrap();
        assert!(
            usage > 50 * (1 << 20) - (1 << 20) && usage <= 52428800,
            "usage {usage}"
        );
        assert!(o["memcg"]["failcnt"].as_u64().is_some_and(|f| f > 0), "{o}");
        assert_eq!(o["victim_cgroup"], cgroup);
        assert_eq!(o["container"]["restart_count"], attempt as u64);
        assert_eq!(o["pod"]["name"], "stress");
        // The kernel's own SIGKILL, just before the kill record.
        let sig = find_from(&recs, exec, |r| {
            r["event"] == "signal" && r["target"]["pid"] == pid
        })
        .expect("signal record");
        assert!(sig < oom + 2);
        assert_eq!(recs[sig]["from_kernel"], true);
        let exit = find_from(&recs, oom, |r| r["event"] == "exit" && r["pid"] == pid)
            .unwrap_or_else(|| panic!("attempt {attempt}: no exit after the kill"));
        assert_eq!(recs[exit]["signal"], 9);
        assert!(recs[exit]["exit_code"].is_null());
        assert_eq!(recs[exit]["verdict"], "memcg_oom");
        let cexit = find_from(&recs, exit, |r| r["event"] == "container_exit").unwrap();
        assert_eq!(recs[cexit]["exit_code"], 137);
        assert_eq!(recs[cexit]["reason"], "OOMKilled");
        assert_eq!(recs[cexit]["verdict"], "memcg_oom");
        at = cexit;
        if attempt < 3 {
            let restart = find_from(&recs, at, |r| r["event"] == "restart").expect("restart");
            assert_eq!(recs[restart]["restart_count"], attempt as u64 + 1);
            at = restart;
        }
    }
    let backoffs: Vec<u64> = events(&recs, "restart")
        .iter()
        .map(|r| r["backoff_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(backoffs, [200, 400, 800], "kubelet back-off doubles");
    // One cycle per attempt: three after their restarts, the last at shutdown.
    let cycles = events(&recs, "cycle");
    assert_eq!(cycles.len(), 4, "{cycles:#?}");
    for (i, c) in cycles.iter().enumerate() {
        assert_eq!(c["container"]["restart_count"], i as u64);
        assert_eq!(c["last_state_reason"], "OOMKilled");
        assert_eq!(c["exit"]["verdict"], "memcg_oom");
        assert_eq!(c["limit"]["limit_bytes"], 52428800);
        assert_eq!(c["limit"]["level"], "container");
        // One victim per incident on a kill of a single process.
        assert_eq!(c["incident"]["victims"].as_array().unwrap().len(), 1);
        assert_eq!(c["incident"]["group_kill"], false);
        assert_eq!(c["incident"]["victims"][0]["comm"], "stress");
        assert!(c["ramp"]["samples"].as_u64().unwrap() >= 3, "{c}");
        assert!(c["ramp"]["growth_mib_per_s"].as_f64().unwrap() > 0.0, "{c}");
        assert!(c["ramp"]["time_to_limit_ms"].as_u64().is_some(), "{c}");
    }
    // The restarts compared with the kubelet schedule of the same flags.
    let expected: Vec<u64> = cycles[..3]
        .iter()
        .map(|c| c["restart"]["expected_backoff_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(expected, [200, 400, 800]);
    let next: Vec<u64> = cycles[..3]
        .iter()
        .map(|c| c["restart"]["next_expected_backoff_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(next, [400, 800, 1600]);
    for c in &cycles[..3] {
        assert_eq!(c["state"], "Running");
        let obs = c["restart"]["observed_backoff_ms"].as_u64().unwrap();
        let dev = c["restart"]["deviation_ms"].as_i64().unwrap();
        assert_eq!(
            dev,
            obs as i64 - c["restart"]["expected_backoff_ms"].as_i64().unwrap()
        );
    }
    assert_eq!(cycles[3]["state"], "CrashLoopBackOff");
    assert!(cycles[3]["restart"].is_null());
    let waits: Vec<&str> = events(&recs, "backoff")
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(waits, ["CrashLoopBackOff"; 3]);
    let stop = recs.last().unwrap();
    assert_eq!(stop["reason"], "max_restarts");
    assert_eq!(stop["oom_kills"], 4);
    assert_eq!(stop["restarts"], 3);
    assert_eq!(stop["lost_events"], 0);
    assert_eq!(stop["decode_errors"], 0);
    // Cleaned up: no cgroup left behind.
    for s in &starts {
        assert!(!cgroup_exists(s["cgroup"].as_str().unwrap()));
    }
    assert!(!cgroup_exists(&parent), "{parent} left behind");
}

/// The pod cgroup holds the limit, the container has none: the kill
/// names the pod cgroup.
#[test]
fn pod_level_limit_names_the_pod_cgroup() {
    let parent = parent("pod");
    let (recs, stderr, out) = run(&[
        "--memory-limit",
        "none",
        "--pod-memory-limit",
        "50Mi",
        "--max-restarts",
        "0",
        "--cgroup-parent",
        &parent,
    ]);
    assert!(out.status.success(), "{stderr}");
    check_envelope(&recs);
    let start = events(&recs, "container_start")[0];
    let ctr = start["cgroup"].as_str().unwrap();
    let pod = &ctr[..ctr.rfind('/').unwrap()];
    let ooms = events(&recs, "oom_kill");
    assert_eq!(ooms.len(), 1, "{recs:#?}");
    let o = ooms[0];
    assert_eq!(o["memcg"]["path"], pod);
    assert_eq!(o["memcg"]["level"], "pod");
    assert_eq!(o["memcg"]["limit_bytes"], 52428800);
    assert_eq!(o["victim_cgroup"], ctr);
    assert_eq!(o["victim"]["comm"], "stress");
    assert_eq!(events(&recs, "container_exit")[0]["reason"], "OOMKilled");
}

/// A process that exits by itself: an exit with its status, no oom_kill.
#[test]
fn normal_exit_produces_no_oom_kill() {
    let parent = parent("normal");
    let stress = stress();
    let (recs, stderr, out) = run(&[
        "--memory-limit",
        "50Mi",
        "--restart-policy",
        "Never",
        "--cgroup-parent",
        &parent,
        "--",
        stress.to_str().unwrap(),
        "--step",
        "4Mi",
        "--interval",
        "10ms",
        "--max",
        "20Mi",
    ]);
    assert!(out.status.success(), "{stderr}");
    check_envelope(&recs);
    assert!(events(&recs, "oom_kill").is_empty(), "{recs:#?}");
    assert!(events(&recs, "signal").is_empty(), "{recs:#?}");
    assert!(!events(&recs, "alloc").is_empty(), "ramp still traced");
    let exit = events(&recs, "exit")
        .into_iter()
        .find(|r| r["comm"] == "stress")
        .expect("exit of stress");
    assert_eq!(exit["exit_code"], 0);
    assert!(exit["signal"].is_null());
    let cexit = events(&recs, "container_exit")[0];
    assert_eq!(cexit["exit_code"], 0);
    assert_eq!(cexit["reason"], "Completed");
    assert_eq!(recs.last().unwrap()["reason"], "restart_policy");
    assert!(events(&recs, "restart").is_empty());
}

/// The kill records are zeroed as a whole in the kernel before they are
/// filled: with a ring buffer of 8 KiB, every kill after the first few is
/// written over the bytes of earlier records, and a part the programs did
/// not write (the victim's own statistics of a container-level kill, the
/// task slots past the count) would carry them. The tracer checks each
/// kill record for such bytes and says so on stderr.
#[test]
fn kill_records_carry_no_stale_ring_bytes() {
    let parent = parent("zeroed");
    let (recs, stderr, out) = run(&[
        "--ring-buffer-size",
        "8Ki",
        "--memory-limit",
        "50Mi",
        "--backoff-initial",
        "100ms",
        "--backoff-max",
        "100ms",
        "--max-restarts",
        "5",
        "--cgroup-parent",
        &parent,
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("unzeroed"), "{stderr}");
    let stop = recs.last().unwrap();
    assert_eq!(stop["oom_kills"], 6, "{stderr}");
    // The ring wrapped with nothing lost: 6 kills with their task lists
    // alone are over 14 KiB.
    assert_eq!(stop["lost_events"], 0);
    assert_eq!(stop["decode_errors"], 0);
    let kills = events(&recs, "oom_kill");
    assert_eq!(kills.len(), 6);
    for k in kills {
        assert_eq!(k["memcg"]["level"], "container", "{k}");
        assert!(k["tasks"].as_array().is_some_and(|t| !t.is_empty()), "{k}");
    }
}

/// The classic-tracepoint OOM source (kernels before 6.8, or where tp_btf
/// is refused) sees the same kill, with the victim's fields from the
/// tracepoint's own layout.
#[test]
fn tracepoint_oom_source() {
    let parent = parent("tracepoint");
    let (recs, stderr, out) = run(&[
        "--oom-source",
        "tracepoint",
        "--max-restarts",
        "0",
        "--cgroup-parent",
        &parent,
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("tracepoint/oom/mark_victim"), "{stderr}");
    let start = &recs[0];
    assert!(
        start["hooks"]["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["hook"] == "tp_btf/mark_victim")
    );
    let o = events(&recs, "oom_kill")[0];
    assert_eq!(o["source"], "tracepoint/oom/mark_victim");
    assert_eq!(o["victim"]["comm"], "stress");
    assert_eq!(o["memcg"]["limit_bytes"], 52428800);
    assert_eq!(
        o["memcg"]["path"],
        events(&recs, "container_start")[0]["cgroup"]
    );
    assert!(o["victim"]["anon_rss_bytes"].as_u64().unwrap() > 40 << 20);
}

/// A real `kill -9` of a process that is not out of memory: SIGKILL and
/// 137 like an OOM kill, but the verdict says who did it.
#[test]
fn kill_9_is_not_an_oom() {
    require_root();
    let parent = parent("kill9");
    let (mut child, mut recs, lines) = start_holding(&parent, &["--restart-policy", "Never"]);
    let pid = recs.last().unwrap()["pid"].as_u64().unwrap() as i32;
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    recs.extend(lines.map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap()));
    assert!(child.wait().unwrap().success());
    assert!(events(&recs, "oom_kill").is_empty(), "{recs:#?}");
    let exit = events(&recs, "exit")
        .into_iter()
        .find(|r| r["pid"] == pid)
        .expect("exit record");
    assert_eq!(exit["signal"], 9);
    assert_eq!(exit["verdict"], "sigkill_other");
    assert_eq!(exit["killed_by"]["comm"], "kill");
    assert_eq!(exit["killed_by"]["from_kernel"], false);
    let cexit = events(&recs, "container_exit")[0];
    assert_eq!(cexit["exit_code"], 137);
    assert_eq!(cexit["reason"], "Error", "no OOM happened in the container");
    assert_eq!(cexit["verdict"], "sigkill_other");
}

/// Exit status 137 without any signal or OOM kill.
#[test]
fn exit_137_without_oom() {
    let parent = parent("exit137");
    let (recs, stderr, out) = run(&[
        "--restart-policy",
        "Never",
        "--cgroup-parent",
        &parent,
        "--",
        "/bin/sh",
        "-c",
        "exit 137",
    ]);
    assert!(out.status.success(), "{stderr}");
    let exit = events(&recs, "exit")
        .into_iter()
        .find(|r| r["comm"] == "sh")
        .expect("exit of sh");
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["verdict"], "exit_137_no_oom");
    assert_eq!(
        events(&recs, "container_exit")[0]["verdict"],
        "exit_137_no_oom"
    );
}
