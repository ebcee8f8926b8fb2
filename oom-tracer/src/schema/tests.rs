use std::time::{Duration, UNIX_EPOCH};

use super::*;

mod callsites;
use callsites::callsites;

fn at(s: u64) -> Timestamp {
    Timestamp(UNIX_EPOCH + Duration::from_secs(1_795_802_400 + s))
}

fn proc() -> Proc {
    Proc {
        pid: 7,
        tgid: 7,
        comm: "stress".into(),
    }
}

fn pod() -> PodRef {
    PodRef {
        namespace: Some("default".into()),
        name: Some("stress".into()),
        uid: "u".into(),
    }
}

fn ctr() -> ContainerRef {
    ContainerRef {
        name: Some("stress".into()),
        id: "c".into(),
        restart_count: Some(0),
    }
}

fn breakdown() -> Breakdown {
    Breakdown {
        anon_bytes: 50 << 20,
        file_bytes: 0,
        shmem_bytes: 0,
        kernel_bytes: 1 << 20,
        sock_bytes: Some(0),
        swap_bytes: Some(0),
        kernel: KernelParts {
            slab_reclaimable_bytes: 1,
            slab_unreclaimable_bytes: 2,
            kernel_stack_bytes: 3,
            pagetables_bytes: 4,
            percpu_bytes: 5,
        },
        events: MemoryEvents {
            max: 20,
            oom: 1,
            oom_kill: 1,
        },
        pending_updates: 0,
    }
}

fn cause() -> Cause {
    Cause {
        part: Part::Anon,
        bytes: 50 << 20,
        share_of_limit_pct: 100,
        victim_rss_bytes: Some(50 << 20),
        text: "anonymous memory 100% of the 50Mi limit".into(),
    }
}

fn pressure() -> Pressure {
    Pressure {
        window_ms: 10_000,
        limit_hits: 40,
        reclaims: 40,
        fruitless: 30,
        stall_ms: 120,
        reclaimed_bytes: 4096,
        last_at: Some(at(1)),
    }
}

/// One record of every event, for round trips.
pub(crate) fn samples() -> Vec<Record> {
    let victim = Victim {
        pid: 7,
        tgid: 7,
        comm: "stress".into(),
        anon_rss_bytes: Some(50 << 20),
        file_rss_bytes: Some(0),
        shmem_rss_bytes: None,
        total_vm_bytes: Some(60 << 20),
        oom_score_adj: Some(0),
        uid: None,
    };
    let trigger = Trigger {
        pid: 7,
        tgid: 7,
        comm: "stress".into(),
        cgroup: Some("/p/c".into()),
    };
    let memcg = Memcg {
        id: 3,
        path: Some("/p/c".into()),
        level: Some(LimitLevel::Container),
        usage_bytes: 52428800,
        limit_bytes: 52428800,
        failcnt: Some(4),
    };
    let bodies: Vec<Body> = vec![
        Start {
            version: "0.1.0".into(),
            mode: Mode::Run,
            kernel: "6.18".into(),
            cgroup_version: Some(CgroupVersion::V1),
            hooks: HookStatus {
                active: vec!["tp_btf/mark_victim".into()],
                missing: vec![MissingHook {
                    hook: "tp_btf/rss_stat".into(),
                    reason: "skipped".into(),
                }],
            },
            startup_ms: 90,
            breakdown: Some(BreakdownCheck {
                enabled: false,
                checking: true,
                detail: "checking in a child process".into(),
            }),
        }
        .into(),
        ContainerStart {
            pod: pod(),
            container: ctr(),
            cgroup: "/p/c".into(),
            pid: 7,
            command: vec!["stress".into()],
            memory_limit_bytes: Some(52428800),
            pod_memory_limit_bytes: None,
            discovered: false,
        }
        .into(),
        Exec {
            proc: proc(),
            cgroup: Some("/p/c".into()),
            pod: Some(pod()),
            container: Some(ctr()),
        }
        .into(),
        Alloc {
            proc: proc(),
            kind: AllocKind::Shmem,
            anon_rss_bytes: 4 << 20,
            memcg_bytes: Some(8 << 20),
            limit_bytes: Some(52428800),
            cgroup: None,
            pod: None,
            container: None,
        }
        .into(),
        Signal {
            signal: 9,
            si_code: 128,
            from_kernel: true,
            target: proc(),
            sender: proc(),
            cgroup: None,
            pod: None,
            container: None,
        }
        .into(),
        OomKill {
            kind: OomKind::Memcg,
            victim: victim.clone(),
            trigger: trigger.clone(),
            memcg: Some(memcg.clone()),
            victim_cgroup: Some("/p/c".into()),
            source: OomSource::TpBtf,
            pod: Some(pod()),
            container: Some(ctr()),
            breakdown: Some(breakdown()),
            cause: Some(cause()),
            tasks: Some(vec![OomTask {
                pid: 7,
                tgid: 7,
                comm: "stress".into(),
                anon_rss_bytes: 50 << 20,
                file_rss_bytes: 0,
                shmem_rss_bytes: 0,
                oom_score_adj: 0,
                victim: true,
                cgroup: Some("/p/c".into()),
                container: Some(ctr()),
            }]),
            pressure: Some(pressure()),
            callsites: Some(callsites()),
            // `victim_breakdown` null, and any field added later.
            ..Default::default()
        }
        .into(),
        Exit {
            proc: proc(),
            signal: Some(9),
            exit_code: None,
            core_dumped: false,
            verdict: Some(Verdict::MemcgOom),
            killed_by: None,
            cgroup: None,
            pod: None,
            container: None,
        }
        .into(),
        ContainerExit {
            pod: pod(),
            container: ctr(),
            exit_code: 137,
            signal: Some(9),
            reason: ExitReason::OomKilled,
            verdict: Some(Verdict::MemcgOom),
            ran_ms: 500,
        }
        .into(),
        Backoff {
            pod: pod(),
            container: ctr(),
            state: ContainerState::CrashLoopBackOff,
            backoff_ms: 10_000,
            next_restart_at: at(10),
        }
        .into(),
        Restart {
            pod: pod(),
            container: ctr(),
            restart_count: 1,
            backoff_ms: 10_000,
            last_reason: ExitReason::OomKilled,
        }
        .into(),
        Cycle {
            pod: Some(pod()),
            container: Some(ctr()),
            state: ContainerState::Running,
            last_state_reason: Some(ExitReason::OomKilled),
            ramp: Some(Ramp {
                started_at: at(0),
                first_rss_bytes: 4 << 20,
                peak_rss_bytes: 48 << 20,
                growth_mib_per_s: Some(96.5),
                time_to_limit_ms: Some(500),
                samples: 12,
            }),
            limit: Some(memcg),
            incident: Some(Incident {
                kind: OomKind::Memcg,
                at: at(1),
                trigger,
                victims: vec![victim],
                group_kill: false,
            }),
            oom_incidents: 1,
            exit: Some(CycleExit {
                at: at(1),
                exit_code: 137,
                signal: Some(9),
                reason: ExitReason::OomKilled,
                verdict: Some(Verdict::MemcgOom),
                ran_ms: 500,
            }),
            restart: Some(CycleRestart {
                restart_count: 1,
                observed_backoff_ms: 10_000,
                expected_backoff_ms: 10_000,
                deviation_ms: 0,
                next_expected_backoff_ms: 20_000,
                next_restart_predicted_at: at(31),
            }),
            cause: Some(cause()),
            cause_carried_over: false,
            top_sites: callsites().top,
        }
        .into(),
        Body::CgroupMkdir(CgroupDir {
            id: 9,
            path: "/p/c".into(),
            level: 2,
        }),
        Body::CgroupRmdir(CgroupDir {
            id: 9,
            path: "/p/c".into(),
            level: 2,
        }),
        PressureRecord {
            cgroup: Some("/p/c".into()),
            pod: Some(pod()),
            container: Some(ctr()),
            pressure: pressure(),
        }
        .into(),
        NearMiss {
            cgroup: Some("/p/c".into()),
            pod: Some(pod()),
            container: Some(ctr()),
            since: at(0),
            pressure: pressure(),
        }
        .into(),
        Lost {
            ringbuf_full: 3,
            read_errors: 1,
            decode_errors: 2,
        }
        .into(),
        Stop {
            reason: StopReason::Signal("SIGTERM".into()),
            restarts: 1,
            oom_kills: 1,
            records: 15,
            lost_events: 3,
            decode_errors: 2,
            unresolved_cgroups: 0,
            hook_stats: vec![HookStat {
                program: "mark_victim".into(),
                run_count: 1,
                run_time_ns: 15_000,
            }],
        }
        .into(),
        BreakdownCheck {
            enabled: true,
            checking: false,
            detail: "total_rss match".into(),
        }
        .into(),
    ];
    bodies.into_iter().map(|b| Record::new(at(0), b)).collect()
}

#[test]
fn every_event_reads_back_as_written() {
    let records = samples();
    let names: Vec<&str> = records.iter().map(Record::event).collect();
    assert_eq!(names, Body::NAMES, "one sample per event, in order");
    for r in records {
        let line = serde_json::to_string(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["event"], r.event());
        assert_eq!(v["time"], "2026-11-27T18:00:00.000000Z");
        let back: Record = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(back, r, "{line}");
    }
}

#[test]
fn exit_flattens_the_process_and_names_closed_sets() {
    let exit = &samples()[6];
    let v = serde_json::to_value(exit).unwrap();
    assert_eq!(v["event"], "exit");
    assert_eq!(v["pid"], 7);
    assert_eq!(v["comm"], "stress");
    assert_eq!(v["signal"], 9);
    assert!(v["exit_code"].is_null());
    assert_eq!(v["verdict"], "memcg_oom");
    let oom = serde_json::to_value(&samples()[5]).unwrap();
    assert_eq!(oom["kind"], "memcg");
    assert_eq!(oom["source"], "tp_btf/mark_victim");
    assert_eq!(oom["memcg"]["level"], "container");
    let cexit = serde_json::to_value(&samples()[7]).unwrap();
    assert_eq!(cexit["reason"], "OOMKilled");
    for v in Verdict::ALL {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
}

#[test]
fn unknown_events_and_missing_fields_are_errors() {
    let unknown = r#"{"v":1,"time":"2026-11-27T18:00:00.000000Z","event":"later"}"#;
    assert!(serde_json::from_str::<Record>(unknown).is_err());
    let partial = r#"{"v":1,"time":"2026-11-27T18:00:00.000000Z","event":"alloc","pid":1}"#;
    assert!(serde_json::from_str::<Record>(partial).is_err());
}

/// docs/schema.md: each event's and each object's table of fields.
fn documented() -> std::collections::BTreeMap<String, Vec<String>> {
    let doc = include_str!("../../../docs/schema.md");
    let mut out = std::collections::BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    for line in doc.lines() {
        let heading = line
            .strip_prefix("### ")
            .map(|h| ("", h))
            .or_else(|| line.strip_prefix("#### object ").map(|h| ("object ", h)));
        if let Some((kind, h)) = heading {
            current = h
                .split(", ")
                .map(|n| format!("{kind}{}", n.trim_matches('`')))
                .collect();
            for n in &current {
                out.insert(n.clone(), Vec::new());
            }
        } else if line.starts_with("## ") {
            current.clear();
        } else if let Some(row) = line.strip_prefix("| `") {
            let field = row.split('`').next().unwrap_or_default().to_owned();
            for n in &current {
                out.get_mut(n).unwrap().push(field.clone());
            }
        }
    }
    out
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.retain(|k| !["v", "event", "time"].contains(&k.as_str()));
    k.sort();
    k
}

#[test]
fn the_documented_fields_are_the_written_ones() {
    let doc = documented();
    let recs: Vec<serde_json::Value> = samples()
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    for r in &recs {
        let event = r["event"].as_str().unwrap();
        let mut fields = doc
            .get(event)
            .unwrap_or_else(|| panic!("docs/schema.md has no section for {event}"))
            .clone();
        fields.sort();
        assert_eq!(fields, keys(r), "docs/schema.md, event {event}");
    }
    let killed_by = serde_json::to_value(KilledBy {
        pid: 1,
        comm: "kubelet".into(),
        from_kernel: false,
    })
    .unwrap();
    let objects = [
        ("pod", &recs[2]["pod"]),
        ("container", &recs[2]["container"]),
        ("process", &recs[4]["target"]),
        ("victim", &recs[5]["victim"]),
        ("trigger", &recs[5]["trigger"]),
        ("memcg", &recs[5]["memcg"]),
        ("killed_by", &killed_by),
        ("hooks", &recs[0]["hooks"]),
        ("missing_hook", &recs[0]["hooks"]["missing"][0]),
        ("hook_stat", &recs[16]["hook_stats"][0]),
        ("breakdown_check", &recs[0]["breakdown"]),
        ("breakdown", &recs[5]["breakdown"]),
        ("kernel_parts", &recs[5]["breakdown"]["kernel"]),
        ("memory_events", &recs[5]["breakdown"]["events"]),
        ("cause", &recs[5]["cause"]),
        ("task", &recs[5]["tasks"][0]),
        ("pressure", &recs[5]["pressure"]),
        ("callsites", &recs[5]["callsites"]),
        ("site", &recs[5]["callsites"]["top"][0]),
        ("stack", &recs[5]["callsites"]["trigger_user"]),
        ("frame", &recs[5]["callsites"]["trigger_user"]["frames"][0]),
        ("ramp", &recs[10]["ramp"]),
        ("incident", &recs[10]["incident"]),
        ("cycle_exit", &recs[10]["exit"]),
        ("cycle_restart", &recs[10]["restart"]),
    ];
    for (name, v) in objects {
        let mut fields = doc
            .get(&format!("object {name}"))
            .unwrap_or_else(|| panic!("docs/schema.md has no object {name}"))
            .clone();
        fields.sort();
        assert_eq!(fields, keys(v), "docs/schema.md, object {name}");
    }
}
