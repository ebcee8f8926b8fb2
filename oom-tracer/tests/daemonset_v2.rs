//! The DaemonSet test on cgroup v2, for real: the scenario of
//! `daemonset.rs` (the DaemonSet's pod template translated field by field,
//! the example pod's three kills, the agent's CRI log read back, the
//! probes), run inside the cgroup v2 guest that `scripts/qemu-v2.sh` boots
//! (a pinned Debian kernel under qemu), on Debian's containerd and runc
//! there, which give the agent's container a private cgroup namespace.
//!
//! One test, two roles. On this machine it boots the guest with
//! `QEMU_V2_CMD` running `tests/containerd/guest-v2.sh`, which starts a
//! containerd on tmpfs state in the guest and runs this same test binary
//! there with `OOM_TRACER_V2_GUEST=1`; in that role it runs the scenario
//! (every assertion of the v1 run, and the private cgroup namespace) and
//! leaves the agent's log and what it saw in the writable share. Back on
//! this machine the test checks the guest's verdict and checks the records
//! that came back once more. Its support is in `daemonset/guest.rs`.
#[path = "daemonset/checks.rs"]
mod checks;
#[path = "daemonset/cluster.rs"]
mod cluster;
mod common;
#[path = "daemonset/guest.rs"]
mod guest;
#[path = "daemonset/lifecycle.rs"]
mod lifecycle;
#[path = "daemonset/pods.rs"]
mod pods;
#[path = "daemonset/scenario.rs"]
mod scenario;

#[test]
fn daemonset_runs_on_cgroup_v2() {
    if guest::in_guest() {
        guest::run_in_guest();
    } else {
        guest::boot_and_check("daemonset_runs_on_cgroup_v2");
    }
}
