//! Call sites, for real: the code that filled the cgroup and the stacks of
//! the allocation that hit the limit, taken by the kernel at each growth
//! step and at the kill, named in userspace, with real workloads in real
//! memory cgroups.
mod common;

use std::process::Command;

use common::{tmpfs::Tmpfs, *};
use serde_json::Value;

/// `stress --two-sites` touches 5 pages in 7 from `grow_fast` (at random,
/// fixed seed: 71.4% within a tenth of a point over a ramp this long).
const FAST_SHARE_PCT: f64 = 500.0 / 7.0;

fn kill_callsites(recs: &[Value], stderr: &str) -> Value {
    let kills = events(recs, "oom_kill");
    assert!(!kills.is_empty(), "an OOM kill:\n{stderr}\n{recs:#?}");
    let c = kills[0]["callsites"].clone();
    assert!(
        c.is_object(),
        "the kill carries call sites: {:#}\n{stderr}",
        kills[0]
    );
    assert_eq!(c["unwinder"], "frame_pointers", "{c:#}");
    c
}

fn symbols(stack: &Value) -> Vec<String> {
    stack["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("frames: {stack:#}"))
        .iter()
        .filter_map(|f| f["symbol"].as_str().map(str::to_owned))
        .collect()
}

/// Two functions grow the container, one at 5/2 the other's rate: the
/// top site names the faster one, with its share of the bytes within 10
/// points of what it touched, the second names the slower one; the
/// trigger's stack at the kill is in one of them, the kernel's is a page
/// fault that ran out of memory; the cycle carries the top site.
#[test]
fn the_top_site_is_the_faster_function_with_its_share() {
    let parent = parent("cs-two");
    let stress = stress();
    let (recs, stderr, _) = run(&[
        "--memory-limit",
        "96Mi",
        "--max-restarts",
        "0",
        // Each growth step is one sample: 512Ki gives about 190 over the
        // ramp, a share within 3.5 points (one standard deviation).
        "--alloc-step",
        "512Ki",
        "--cgroup-parent",
        &parent,
        "--",
        stress.to_str().unwrap(),
        "--two-sites",
        "--step",
        "4Mi",
        "--interval",
        "5ms",
    ]);
    let c = kill_callsites(&recs, &stderr);
    let top = c["top"].as_array().expect("top sites");
    assert!(top.len() >= 2, "two sites at least: {c:#}");
    let names0 = symbols(&top[0]["stack"]);
    assert!(
        names0.first().is_some_and(|n| n.contains("grow_fast")),
        "the top site is grow_fast: {c:#}"
    );
    let share = top[0]["share_pct"].as_f64().unwrap();
    assert!(
        (share - FAST_SHARE_PCT).abs() <= 10.0,
        "grow_fast touched {FAST_SHARE_PCT:.1}% of the bytes, its share is {share}: {c:#}"
    );
    assert!(
        symbols(&top[1]["stack"])
            .first()
            .is_some_and(|n| n.contains("grow_slow")),
        "the second site is grow_slow: {c:#}"
    );
    let ramp = c["ramp_bytes"].as_u64().unwrap();
    assert!(
        ramp > 48 << 20,
        "the ramp's bytes are most of the limit: {ramp}"
    );
    let trigger = symbols(&c["trigger_user"]);
    assert!(
        trigger
            .first()
            .is_some_and(|n| n.contains("grow_fast") || n.contains("grow_slow")),
        "the trigger's stack is in one of the two: {c:#}"
    );
    let kernel = symbols(&c["trigger_kernel"]);
    assert!(
        kernel.iter().any(|s| s.contains("out_of_memory"))
            && kernel.iter().any(|s| s.contains("fault")),
        "the kernel stack is a page fault that ran out of memory: {kernel:?}"
    );
    let cycles = events(&recs, "cycle");
    assert!(
        symbols(&cycles[0]["top_sites"][0]["stack"])
            .first()
            .is_some_and(|n| n.contains("grow_fast")),
        "{:#}",
        cycles[0]
    );
}

/// A process fills a tmpfs: the kernel stack of the charge that failed is
/// the shmem write path.
#[test]
fn a_tmpfs_writer_s_kernel_stack_shows_the_shmem_path() {
    let fs = Tmpfs::mount("cs-tmpfs");
    let file = fs.0.join("fill");
    let parent = parent("cs-tmpfs");
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
        "--tmpfs-file",
        file.to_str().unwrap(),
        "--step",
        "4Mi",
        "--interval",
        "10ms",
    ]);
    let c = kill_callsites(&recs, &stderr);
    let kernel = symbols(&c["trigger_kernel"]);
    assert!(
        kernel.iter().any(|s| s.starts_with("shmem_")),
        "the charge came through shmem: {kernel:?}"
    );
    assert!(
        kernel.iter().any(|s| s.contains("write")),
        "from a write: {kernel:?}"
    );
}

const NO_FP_C: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) static char *fill(size_t n) {
    char *p = malloc(n);
    if (p) for (size_t i = 0; i < n; i += 4096) p[i] = (char)i | 1;
    return p;
}

int main(void) {
    for (;;) {
        if (!fill(1 << 20)) return 1;
        usleep(1000);
    }
}
"#;

/// A C program built without frame pointers: the record says what it
/// can (the innermost frame, named) and that the stack is shallow, never
/// a made-up caller.
#[test]
fn a_c_program_without_frame_pointers_is_named_and_shallow() {
    let dir = std::env::temp_dir().join(format!("oom-tracer-cs-nofp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("hog.c");
    let bin = dir.join("hog");
    std::fs::write(&src, NO_FP_C).unwrap();
    let st = Command::new("gcc")
        .args(["-O2", "-fomit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("running gcc (the test builds a C program without frame pointers)");
    assert!(st.success(), "gcc failed");
    let parent = parent("cs-nofp");
    let (recs, stderr, _) = run(&[
        "--memory-limit",
        "48Mi",
        "--max-restarts",
        "0",
        "--alloc-step",
        "1Mi",
        "--cgroup-parent",
        &parent,
        "--",
        bin.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let c = kill_callsites(&recs, &stderr);
    let top = &c["top"][0]["stack"];
    assert!(
        // gcc may rename it (`fill.constprop.0`).
        symbols(top).first().is_some_and(|n| n.starts_with("fill")),
        "the innermost frame is named: {c:#}"
    );
    assert_eq!(top["shallow"], true, "and the stack is shallow: {c:#}");
    assert!(top["depth"].as_u64().unwrap() <= 2, "{c:#}");
}

/// `stress --two-sites` from `bin`, its kill named as if it were gone.
fn two_sites_as_gone(test: &str, bin: &std::path::Path, interval: &str) -> (Value, String) {
    let parent = parent(test);
    let (recs, stderr, _) = run(&[
        "--memory-limit",
        "64Mi",
        "--max-restarts",
        "0",
        "--alloc-step",
        "1Mi",
        "--test-callsites-as-gone",
        "--cgroup-parent",
        &parent,
        "--",
        bin.to_str().unwrap(),
        "--two-sites",
        "--step",
        "4Mi",
        "--interval",
        interval,
    ]);
    (kill_callsites(&recs, &stderr), stderr)
}

/// A victim gone before its record is read: its sites are named from the
/// mappings remembered while it grew and the binary held open since (the
/// same file, even once it is deleted: an image removed, a rollout); where
/// the binary has no symbol for them (stripped), they stay `module+offset`
/// with the build id, never named from another file.
#[test]
fn a_victim_gone_before_its_record_is_read_is_named_or_honestly_marked() {
    let (c, _) = two_sites_as_gone("cs-gone", &stress(), "5ms");
    let f = &c["top"][0]["stack"]["frames"][0];
    assert!(
        f["symbol"]
            .as_str()
            .is_some_and(|s| s.contains("grow_fast")),
        "named from the remembered mappings: {c:#}"
    );
    assert!(f["build_id"].is_string(), "{f:#}");

    let dir = std::env::temp_dir().join(format!("oom-tracer-cs-gone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A copy of stress, removed while it runs: named from the file held.
    let copy = dir.join("stress-copy");
    std::fs::copy(stress(), &copy).unwrap();
    let remover = {
        let copy = copy.clone();
        std::thread::spawn(move || {
            // Once it runs (and has grown a step or two: its binary is
            // held), well before its kill (16 steps of 50 ms).
            for _ in 0..600 {
                if runs(&copy) {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = std::fs::remove_file(&copy);
        })
    };
    let (c, stderr) = two_sites_as_gone("cs-gone-bin", &copy, "50ms");
    remover.join().unwrap();
    assert!(!copy.exists(), "the copy was removed while it ran");
    let f = &c["top"][0]["stack"]["frames"][0];
    assert!(
        f["symbol"]
            .as_str()
            .is_some_and(|s| s.contains("grow_fast")),
        "named from the deleted file, held open: {f:#}\n{stderr}"
    );

    // A stripped copy: nothing names its frames.
    let stripped = dir.join("stress-stripped");
    let st = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(stress())
        .status()
        .expect("running strip (binutils)");
    assert!(st.success(), "strip failed: {st:?}");
    let (c, stderr) = two_sites_as_gone("cs-stripped", &stripped, "5ms");
    let _ = std::fs::remove_dir_all(&dir);
    let f = &c["top"][0]["stack"]["frames"][0];
    assert!(
        f["symbol"].is_null(),
        "no symbol in a stripped binary: {f:#}\n{stderr}"
    );
    assert!(
        f["module"]
            .as_str()
            .is_some_and(|m| m.ends_with("stress-stripped")),
        "{f:#}"
    );
    assert!(f["offset"].is_u64() && f["build_id"].is_string(), "{f:#}");
}

/// Whether a process runs the executable `path`.
fn runs(path: &std::path::Path) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .any(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == path))
}
