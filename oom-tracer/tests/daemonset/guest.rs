//! The two roles of the cgroup v2 DaemonSet test: on this machine, boot
//! the guest of `scripts/qemu-v2.sh` with `tests/containerd/guest-v2.sh`
//! and check what comes back; in the guest, run the scenario and leave
//! its results in the writable share.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use serde_json::{Value, json};

use crate::{
    checks::{breakdown_verdict, check_records, json_lines},
    cluster::images_dir,
    common::{deploy, require_root},
    scenario,
};

/// The kernel CI boots: a Debian 12 package that apt serves (qemu-v2.sh
/// downloads it once into /var/tmp/oom-tracer-qemu-v2). `KERNEL_PKG` or
/// `KERNEL_DEB` in the environment runs another (docs/v2-qemu/README.md).
pub(crate) const PINNED_KERNEL: &str = "linux-image-6.1.0-57-amd64-unsigned=6.1.192-3";
/// The modules the guest loads: the 9p root's, overlayfs for containerd's
/// snapshotter, and the bridge and veth devices of the pod network.
const MODULES: &str = "virtio_pci 9pnet_virtio 9p overlay bridge veth";
/// Set by guest-v2.sh for the run inside the guest.
const GUEST_ENV: &str = "OOM_TRACER_V2_GUEST";
/// The whole boot may take this long (TCG emulation; a run takes minutes).
const QEMU_TIMEOUT_S: u32 = 1200;

pub(crate) fn in_guest() -> bool {
    std::env::var_os(GUEST_ENV).is_some_and(|v| v == "1")
}

/// In the guest: the scenario on cgroup v2, its results in `$OUT`.
pub(crate) fn run_in_guest() {
    let out = PathBuf::from(std::env::var("OUT").expect("OUT: the guest's writable share"));
    assert!(
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "{GUEST_ENV}=1, but /sys/fs/cgroup is not cgroup v2"
    );
    let outcome = scenario::runs_as_deployed(true);
    std::fs::write(out.join("agent.log"), &outcome.log).expect("writing the agent's log to OUT");
    let result = json!({
        "uid": outcome.uid,
        "attempts": outcome.attempts,
        "agent_cgroup_view": outcome.own_cgroup.trim(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim(),
        // What the default DaemonSet names of each kill's top call site.
        "top_sites": outcome
            .records
            .iter()
            .filter(|r| r["event"] == "oom_kill")
            .map(|r| r["callsites"]["top"][0]["stack"]["frames"][0].clone())
            .collect::<Vec<_>>(),
    });
    std::fs::write(out.join("result.json"), result.to_string()).unwrap();
}

/// Fails naming `what` unless `path` exists.
fn require(path: &Path, what: &str) {
    assert!(path.exists(), "{} is missing: {what}", path.display());
}

/// On this machine: boots the cgroup v2 guest, runs `test` of this binary
/// there, and checks the guest's verdict and the records it sent back.
pub(crate) fn boot_and_check(test: &str) {
    require_root();
    let root = deploy::workspace();
    let exe = std::env::current_exe().unwrap();
    for hidden in ["/tmp/", "/run/", "/var/tmp/", "/mnt/"] {
        assert!(
            !exe.starts_with(hidden) && !root.starts_with(hidden),
            "{} and {} must not be under {hidden}: the guest mounts its own file systems there",
            exe.display(),
            root.display()
        );
    }
    for name in ["agent", "stress"] {
        require(
            &images_dir().join(format!("{name}.tar")),
            "build the images with `cargo xtask images` (cargo xtask test does)",
        );
    }
    let setup = "the guest reuses the host's test runtime: run tests/containerd/setup.sh \
                 (cargo xtask test does)";
    for f in [
        "/etc/oom-tracer-test/containerd.toml",
        "/etc/oom-tracer-test/cni-pods/10-oom-tracer-test.conflist",
        "/var/lib/oom-tracer-test/build/pause.oci.tar",
    ] {
        require(Path::new(f), setup);
    }
    let out = root.join("target/qemu-v2-daemonset");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    // qemu-v2.sh checks for the binaries of the cycle it runs by default.
    let bin_dir = Path::new(crate::common::TRACER).parent().unwrap();
    let mut qemu = Command::new("bash");
    qemu.arg(root.join("scripts/qemu-v2.sh"))
        .arg(bin_dir)
        .env("OUT", &out)
        .env("QEMU_V2_MEM", "3G")
        .env("QEMU_V2_TIMEOUT", QEMU_TIMEOUT_S.to_string())
        .env("QEMU_V2_MODULES", MODULES)
        .env(
            "QEMU_V2_CMD",
            format!(
                "{} {} {test}",
                root.join("tests/containerd/guest-v2.sh").display(),
                exe.display()
            ),
        );
    if std::env::var_os("KERNEL_PKG").is_none() && std::env::var_os("KERNEL_DEB").is_none() {
        qemu.env("KERNEL_PKG", PINNED_KERNEL);
    }
    let started = Instant::now();
    let status = qemu.status().expect("running bash scripts/qemu-v2.sh");
    let took = started.elapsed();
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    let summary = read("summary.txt");
    let tail = |text: &str, n: usize| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    assert!(
        status.success(),
        "the cgroup v2 guest's run failed ({status}); in {}:\n--- summary.txt\n{summary}\n--- \
         v2-cycle.log (guest-v2.sh)\n{}\n--- test.log (the test in the guest)\n{}\n--- console.log\n{}",
        out.display(),
        tail(&read("v2-cycle.log"), 30),
        tail(&read("v2-out/test.log"), 80),
        tail(&read("console.log"), 20),
    );
    // What came back through the writable share: the agent's CRI log and
    // what the guest saw, checked again here.
    let result: Value = serde_json::from_str(&read("v2-out/result.json"))
        .unwrap_or_else(|e| panic!("v2-out/result.json from the guest ({e})"));
    let attempts: Vec<String> = serde_json::from_value(result["attempts"].clone()).unwrap();
    let (records, _) = json_lines(&out.join("v2-out/agent.log"));
    check_records(
        &records,
        "v2",
        result["uid"].as_str().expect("the example pod's uid"),
        &attempts,
    );
    assert_eq!(records[0]["kernel"], result["kernel"], "{}", records[0]);
    assert_eq!(result["agent_cgroup_view"], "0::/", "{result}");
    eprintln!(
        "measure: cgroup v2 DaemonSet test in qemu: {} s in all; {}",
        took.as_secs(),
        summary
            .lines()
            .filter(|l| l.starts_with("kernel package") || l.starts_with("qemu:"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    eprintln!(
        "the agent in the guest: breakdown {}; hooks {}",
        breakdown_verdict(&records),
        records[0]["hooks"]
    );
}
