//! Why it died, for real: the memory breakdown read in the kernel at the
//! kill, the cause in words, who was there, and the reclaim pressure
//! before it, with real workloads in real memory cgroups.
mod common;

use std::{
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
};

use common::{tmpfs::Tmpfs, *};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// One transparent huge page: the most a charge may still have wanted.
const THP: u64 = 2 * MIB;

fn kills(recs: &[Value]) -> Vec<&Value> {
    events(recs, "oom_kill")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The breakdown of a kill, checked for what every one must say.
fn breakdown(kill: &Value) -> &Value {
    let b = &kill["breakdown"];
    assert!(b.is_object(), "the kill carries a breakdown: {kill:#}");
    assert!(u(&b["events"]["oom"]) >= 1, "{b}");
    b
}

/// The startup check's verdict: its one `breakdown_check` record.
fn verdict(recs: &[Value]) -> &Value {
    let v = events(recs, "breakdown_check");
    assert_eq!(v.len(), 1, "one verdict: {recs:#?}");
    v[0]
}

/// Sum of the parts that count against the limit.
fn parts(b: &Value) -> u64 {
    u(&b["anon_bytes"])
        + u(&b["file_bytes"])
        + u(&b["shmem_bytes"])
        + u(&b["kernel_bytes"])
        + b["sock_bytes"].as_u64().unwrap_or(0)
}

/// `stress` under 50Mi: the cause is anonymous memory, and the parts add
/// up to the usage the kernel read from the page counter. Each attempt
/// reaches the limit within a second, but builds that memory itself: the
/// cause is not carried over from the attempt before.
#[test]
fn the_hog_dies_of_anonymous_memory_and_the_parts_add_up() {
    let parent = parent("why-anon");
    let (recs, stderr, out) = run(&[
        "--memory-limit",
        "50Mi",
        "--max-restarts",
        "1",
        "--backoff-initial",
        "200ms",
        "--cgroup-parent",
        &parent,
    ]);
    assert!(out.status.success(), "{stderr}");
    // `start` says the check runs beside the tracing; its verdict follows.
    assert_eq!(recs[0]["breakdown"]["checking"], true, "{:#}", recs[0]);
    let check = verdict(&recs);
    assert_eq!(check["enabled"], true, "{check:#}\n{stderr}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("(a child process in a probe cgroup)"),
        "{check:#}"
    );
    assert!(
        stderr.contains("memory breakdown at OOM kills: on"),
        "{stderr}"
    );
    let k = kills(&recs);
    assert_eq!(k.len(), 2, "{recs:#?}");
    let b = breakdown(k[0]);
    let usage = u(&k[0]["memcg"]["usage_bytes"]);
    let sum = parts(b);
    assert!(
        sum.abs_diff(usage) <= THP,
        "parts {sum} vs usage {usage}: {b:#}"
    );
    assert!(u(&b["anon_bytes"]) > 40 * MIB, "{b:#}");
    let cause = &k[0]["cause"];
    assert_eq!(cause["part"], "anon", "{cause:#}");
    assert!(u(&cause["share_of_limit_pct"]) >= 80, "{cause:#}");
    assert!(
        cause["text"]
            .as_str()
            .unwrap()
            .starts_with("anonymous memory "),
        "{cause:#}"
    );
    // The task list names the victim.
    let tasks = k[0]["tasks"].as_array().expect("a task list");
    assert!(
        tasks
            .iter()
            .any(|t| t["victim"] == true && t["comm"] == "stress"),
        "{tasks:#?}"
    );
    // The cycles carry the cause; the second attempt ramped on its own.
    let cycles = events(&recs, "cycle");
    assert_eq!(cycles.len(), 2, "{cycles:#?}");
    assert!(
        u(&cycles[1]["ramp"]["time_to_limit_ms"]) < 1000,
        "{:#}",
        cycles[1]
    );
    for cycle in cycles {
        assert_eq!(cycle["cause"]["part"], "anon");
        assert_eq!(cycle["cause_carried_over"], false, "{cycle:#}");
    }
}

/// A process fills a tmpfs (as an `emptyDir` with `medium: Memory` does):
/// the cause is shmem, the victim's own RSS is small, and as the tmpfs
/// outlives the restart the next attempt dies at once of the same cause.
#[test]
fn a_tmpfs_fills_the_cgroup_and_outlives_the_restart() {
    let fs = Tmpfs::mount("tmpfs");
    let file = fs.0.join("fill");
    let parent = parent("why-tmpfs");
    let stress = stress();
    let (recs, stderr, _) = run(&[
        "--memory-limit",
        "50Mi",
        "--pod-memory-limit",
        "50Mi",
        "--max-restarts",
        "1",
        "--backoff-initial",
        "200ms",
        "--cgroup-parent",
        &parent,
        "--",
        stress.to_str().unwrap(),
        "--tmpfs-file",
        file.to_str().unwrap(),
        "--step",
        "4Mi",
        "--interval",
        "20ms",
    ]);
    let k = kills(&recs);
    assert!(k.len() >= 2, "a kill per attempt:\n{stderr}\n{recs:#?}");
    for kill in &k[..2] {
        let b = breakdown(kill);
        assert!(u(&b["shmem_bytes"]) > 40 * MIB, "{b:#}");
        assert_eq!(kill["cause"]["part"], "shmem", "{kill:#}");
        let rss = u(&kill["cause"]["victim_rss_bytes"]);
        assert!(rss < 10 * MIB, "the victim's own RSS is small: {rss}");
        assert!(
            kill["cause"]["text"]
                .as_str()
                .unwrap()
                .starts_with("tmpfs/shmem "),
            "{kill:#}"
        );
    }
    // The tmpfs grew in steps, seen from the cgroup's own statistics.
    let shmem_steps = events(&recs, "alloc")
        .iter()
        .filter(|a| a["kind"] == "shmem")
        .count();
    assert!(shmem_steps >= 5, "a shmem ramp: {shmem_steps} steps");
    let cycles = events(&recs, "cycle");
    assert_eq!(cycles.len(), 2, "{cycles:#?}");
    assert_eq!(cycles[0]["cause"]["part"], "shmem");
    assert_eq!(cycles[0]["cause_carried_over"], false);
    assert_eq!(cycles[1]["cause"]["part"], "shmem");
    assert_eq!(
        cycles[1]["cause_carried_over"], true,
        "the second attempt died at once of the same cause: {:#}",
        cycles[1]
    );
}

/// A parent with two children: one grows, the other (oom_score_adj 1000)
/// is chosen. The task list shows both, with their memory.
#[test]
fn the_task_list_shows_the_sibling_and_the_grower() {
    let parent = parent("why-tasks");
    let stress = stress();
    let (recs, stderr, _) = run(&[
        "--memory-limit",
        "50Mi",
        "--max-restarts",
        "0",
        "--cgroup-parent",
        &parent,
        "--",
        stress.to_str().unwrap(),
        "--with-victim-sibling",
        "--step",
        "4Mi",
        "--interval",
        "20ms",
    ]);
    let k = kills(&recs);
    assert!(!k.is_empty(), "{stderr}");
    let first = k[0];
    let tasks = first["tasks"].as_array().expect("a task list");
    assert!(tasks.len() >= 3, "parent, sibling, grower: {tasks:#?}");
    let victim = tasks
        .iter()
        .find(|t| t["victim"] == true)
        .expect("the victim is in the list");
    assert_eq!(victim["oom_score_adj"], 1000, "{tasks:#?}");
    assert_eq!(first["victim"]["pid"], victim["pid"]);
    let grower = tasks
        .iter()
        .filter(|t| t["victim"] == false)
        .max_by_key(|t| u(&t["anon_rss_bytes"]))
        .unwrap();
    assert!(
        u(&grower["anon_rss_bytes"]) > 30 * MIB,
        "the grower is there with its memory: {tasks:#?}"
    );
    assert!(tasks.iter().all(|t| t["cgroup"].is_string()), "{tasks:#?}");
}

/// A 96 MiB file, out of the page cache: read inside the cgroup, it is
/// charged there.
fn cold_file(name: &str) -> PathBuf {
    let path = Path::new("/var/tmp").join(format!("oom-tracer-{name}-{}.dat", std::process::id()));
    let chunk = vec![0x42u8; MIB as usize];
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..96 {
        std::io::Write::write_all(&mut f, &chunk).unwrap();
    }
    f.sync_all().unwrap();
    // SAFETY: advice on our own open file.
    unsafe { libc_fadvise(f.as_raw_fd(), 0, 0, 4) }; // POSIX_FADV_DONTNEED
    path
}

unsafe extern "C" {
    #[link_name = "posix_fadvise"]
    fn libc_fadvise(fd: i32, offset: i64, len: i64, advice: i32) -> i32;
}

/// A workload that holds at its limit by re-reading a file larger than
/// the limit: it reclaims page cache all along, is never killed, and gets
/// `pressure` records and a `near_miss`.
#[test]
fn holding_at_the_limit_on_page_cache_is_a_near_miss() {
    let file = cold_file("near-miss");
    let parent = parent("why-near-miss");
    let script = format!(
        "end=$(($(date +%s) + 6)); while [ $(date +%s) -lt $end ]; do cat {} > /dev/null; done",
        file.display()
    );
    let (recs, stderr, out) = run(&[
        "--memory-limit",
        "50Mi",
        "--max-restarts",
        "0",
        "--restart-policy",
        "Never",
        "--near-miss-after",
        "2s",
        "--cgroup-parent",
        &parent,
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{stderr}");
    assert!(kills(&recs).is_empty(), "no kill: {recs:#?}");
    let pressure = events(&recs, "pressure");
    assert!(
        pressure.len() >= 2,
        "pressure records while it lasts: {recs:#?}"
    );
    assert!(pressure.iter().all(|p| u(&p["reclaims"]) > 0));
    let near = events(&recs, "near_miss");
    assert_eq!(near.len(), 1, "{recs:#?}");
    let n = near[0];
    assert!(u(&n["reclaims"]) > 10, "{n:#}");
    assert!(u(&n["reclaimed_bytes"]) > 10 * MIB, "{n:#}");
    assert!(n["cgroup"].as_str().unwrap().starts_with(&parent), "{n:#}");
    assert_eq!(n["container"]["name"], "stress");
    let exit = events(&recs, "container_exit")[0];
    assert_eq!(exit["reason"], "Completed");
}

/// A kernel whose layout fails the startup check (forced here) runs
/// without the breakdown and says so.
#[test]
fn a_layout_that_fails_the_check_switches_the_breakdown_off() {
    require_root();
    let parent = parent("why-check");
    let out = Command::new(TRACER)
        .args([
            "run",
            "--memory-limit",
            "50Mi",
            "--max-restarts",
            "0",
            "--cgroup-parent",
            &parent,
        ])
        .env("OOM_TRACER_TEST_CORRUPT_STAT_LAYOUT", "1")
        .env("OOM_TRACER_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let recs: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let check = verdict(&recs);
    assert_eq!(check["enabled"], false, "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("do not match"),
        "{check}"
    );
    assert!(
        stderr.contains("memory breakdown at OOM kills: off"),
        "{stderr}"
    );
    let k = kills(&recs);
    assert_eq!(k.len(), 1, "the kill is still recorded");
    assert!(
        k[0]["breakdown"].is_null() && k[0]["cause"].is_null(),
        "{:#}",
        k[0]
    );
}
