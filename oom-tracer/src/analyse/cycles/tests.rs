//! Cycle analysis on hand-made record sequences (run and agent order).
use super::*;
use crate::schema::{AllocKind, Lost, OomKind, OomSource, Proc, Trigger, Verdict, Victim};

fn rec(t: &str, body: impl Into<Body>) -> Record {
    Record::new(format!("2026-11-27T10:00:{t}Z").parse().unwrap(), body)
}

fn pod() -> PodRef {
    PodRef {
        namespace: Some("default".into()),
        name: Some("p".into()),
        uid: "u1".into(),
    }
}

fn ctr(n: u32) -> ContainerRef {
    ContainerRef {
        name: Some("c".into()),
        id: format!("id{n}"),
        restart_count: Some(n),
    }
}

fn victim(pid: u32) -> Victim {
    Victim {
        pid,
        tgid: pid,
        comm: "stress".into(),
        anon_rss_bytes: Some(50 << 20),
        file_rss_bytes: None,
        shmem_rss_bytes: None,
        total_vm_bytes: None,
        oom_score_adj: Some(0),
        uid: Some(0),
    }
}

fn start(t: &str, n: u32) -> Record {
    rec(
        t,
        ContainerStart {
            pod: pod(),
            container: ctr(n),
            cgroup: "/x".into(),
            pid: 1,
            command: vec![],
            memory_limit_bytes: Some(50 << 20),
            pod_memory_limit_bytes: None,
            discovered: false,
        },
    )
}

fn alloc(t: &str, n: u32, mib: u64) -> Record {
    rec(
        t,
        Alloc {
            proc: Proc {
                pid: 1,
                tgid: 1,
                comm: "stress".into(),
            },
            kind: AllocKind::Anon,
            anon_rss_bytes: mib << 20,
            memcg_bytes: None,
            limit_bytes: Some(50 << 20),
            cgroup: None,
            pod: Some(pod()),
            container: Some(ctr(n)),
        },
    )
}

fn oom(t: &str, n: u32, pid: u32) -> Record {
    rec(
        t,
        OomKill {
            kind: OomKind::Memcg,
            victim: victim(pid),
            trigger: Trigger {
                pid,
                tgid: pid,
                comm: "stress".into(),
                cgroup: None,
            },
            memcg: Some(Memcg {
                id: 9,
                path: Some("/x".into()),
                level: None,
                usage_bytes: 50 << 20,
                limit_bytes: 50 << 20,
                failcnt: Some(3),
            }),
            victim_cgroup: None,
            source: OomSource::TpBtf,
            pod: Some(pod()),
            container: Some(ctr(n)),
            breakdown: None,
            victim_breakdown: None,
            cause: None,
            tasks: None,
            pressure: None,
            callsites: None,
        },
    )
}

fn exit(t: &str, n: u32, ran_ms: u64) -> Record {
    rec(
        t,
        ContainerExit {
            pod: pod(),
            container: ctr(n),
            exit_code: 137,
            signal: Some(9),
            reason: ExitReason::OomKilled,
            verdict: Some(Verdict::MemcgOom),
            ran_ms,
        },
    )
}

fn restart(t: &str, n: u32, backoff_ms: u64) -> Record {
    rec(
        t,
        Restart {
            pod: pod(),
            container: ctr(n),
            restart_count: n,
            backoff_ms,
            last_reason: ExitReason::OomKilled,
        },
    )
}

fn policy() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_secs(10),
        max: Duration::from_secs(300),
        reset_after: Duration::from_secs(600),
    }
}

#[test]
fn run_mode_cycle_with_ramp_incident_and_restart() {
    let mut c = Cycles::new(policy());
    for r in [
        start("00.000000", 0),
        alloc("00.100000", 0, 10),
        alloc("00.500000", 0, 30),
        alloc("01.100000", 0, 50),
        oom("01.200000", 0, 7),
        exit("01.210000", 0, 1210),
    ] {
        assert!(c.observe(&r).is_empty());
    }
    let out = c.observe(&restart("11.300000", 1, 10_090));
    assert_eq!(out.len(), 1);
    let v = serde_json::to_value(&out[0]).unwrap();
    assert_eq!(v["state"], "Running");
    assert_eq!(v["last_state_reason"], "OOMKilled");
    assert_eq!(v["ramp"]["samples"], 3);
    assert_eq!(v["ramp"]["growth_mib_per_s"], 40.0);
    assert_eq!(v["ramp"]["time_to_limit_ms"], 1200);
    assert_eq!(v["incident"]["victims"].as_array().unwrap().len(), 1);
    assert_eq!(v["incident"]["group_kill"], false);
    assert_eq!(v["limit"]["limit_bytes"], 52428800);
    assert_eq!(v["exit"]["verdict"], "memcg_oom");
    assert_eq!(v["restart"]["expected_backoff_ms"], 10_000);
    assert_eq!(v["restart"]["deviation_ms"], 90);
    assert_eq!(v["restart"]["next_expected_backoff_ms"], 20_000);
    assert_eq!(
        v["restart"]["next_restart_predicted_at"],
        "2026-11-27T10:00:32.510000Z"
    );
    assert_eq!(
        v["container"]["restart_count"], 0,
        "the cycle is the attempt that died"
    );
}

#[test]
fn agent_order_and_group_kill_and_shutdown() {
    let mut c = Cycles::new(policy());
    c.observe(&start("00.000000", 0));
    c.observe(&oom("01.000000", 0, 7));
    c.observe(&oom("01.010000", 0, 8));
    c.observe(&exit("01.020000", 0, 1020));
    // Agent: the new container's start comes before the restart record.
    assert!(c.observe(&start("11.100000", 1)).is_empty());
    let out = c.observe(&restart("11.100000", 1, 10_080));
    let v = serde_json::to_value(&out[0]).unwrap();
    assert_eq!(v["incident"]["group_kill"], true);
    assert_eq!(v["incident"]["victims"].as_array().unwrap().len(), 2);
    assert_eq!(v["oom_incidents"], 1);
    assert!(v["ramp"].is_null());
    // Shutdown while attempt 1 waits for its restart.
    c.observe(&oom("12.000000", 1, 9));
    c.observe(&exit("12.010000", 1, 900));
    let out = c.finish();
    assert_eq!(out.len(), 1);
    let v = serde_json::to_value(&out[0]).unwrap();
    assert_eq!(v["state"], "CrashLoopBackOff");
    assert!(v["restart"].is_null());
    assert!(c.finish().is_empty());
}

#[test]
fn records_without_pods_are_ignored() {
    let mut c = Cycles::new(policy());
    let r = rec(
        "00.000000",
        Lost {
            ringbuf_full: 1,
            read_errors: 0,
            decode_errors: 0,
        },
    );
    assert!(c.observe(&r).is_empty());
    assert!(c.finish().is_empty());
}

/// An OOM kill whose cause is `part`, 48Mi of the 50Mi limit, with the
/// victim's own RSS `victim_rss_mib`.
fn oom_caused(t: &str, n: u32, pid: u32, part: Part, victim_rss_mib: u64) -> Record {
    let mut r = oom(t, n, pid);
    if let Body::OomKill(k) = &mut r.body {
        k.cause = Some(Cause {
            part,
            bytes: 48 << 20,
            share_of_limit_pct: 96,
            victim_rss_bytes: Some(victim_rss_mib << 20),
            text: String::new(),
        });
    }
    r
}

/// Two attempts, each killed 0.5 s after its start by the same cause; the
/// second one's cycle.
fn second_attempt(part: Part, victim_rss_mib: u64) -> serde_json::Value {
    let mut c = Cycles::new(policy());
    let mut out = Vec::new();
    for r in [
        start("00.000000", 0),
        oom_caused("00.500000", 0, 7, part, victim_rss_mib),
        exit("00.510000", 0, 510),
        restart("10.510000", 1, 10_000),
        start("10.510000", 1),
        oom_caused("11.010000", 1, 8, part, victim_rss_mib),
        exit("11.020000", 1, 510),
        restart("31.020000", 2, 20_000),
    ] {
        out.extend(c.observe(&r));
    }
    assert_eq!(out.len(), 2, "{out:#?}");
    serde_json::to_value(&out[1]).unwrap()
}

#[test]
fn a_fast_ramp_of_the_victims_own_memory_is_not_carried_over() {
    // The default stress: anonymous memory to the limit in 0.5 s, every
    // attempt. Its memory went with its tasks; nothing outlived the restart.
    let v = second_attempt(Part::Anon, 50);
    assert_eq!(v["cause"]["part"], "anon");
    assert_eq!(v["cause_carried_over"], false, "{v:#}");
}

#[test]
fn tmpfs_the_victim_does_not_hold_is_carried_over() {
    // A tmpfs kept across the restart: the victim's own RSS is small.
    let v = second_attempt(Part::Shmem, 2);
    assert_eq!(v["cause_carried_over"], true, "{v:#}");
    // Mapped by the victim itself, it is its own doing again.
    let v = second_attempt(Part::Shmem, 40);
    assert_eq!(v["cause_carried_over"], false, "{v:#}");
}
