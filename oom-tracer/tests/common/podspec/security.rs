//! The security side of the translation: the pod's namespaces, the
//! sandbox's security context, and each container's (privileged, users,
//! read-only root, no_new_privs, capabilities, seccomp, masked and
//! read-only paths).

use k8s_cri::v1::{
    Capability, Int64Value, LinuxContainerSecurityContext, LinuxSandboxSecurityContext,
    NamespaceOption, SecurityProfile, security_profile::ProfileType,
};

use super::Fields;

/// CRI NamespaceMode.
const POD: i32 = 0;
const CONTAINER: i32 = 1;
const NODE: i32 = 2;
/// What the kubelet masks and makes read-only in /proc and /sys of every
/// unprivileged container (pkg/securitycontext: procMount Default).
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The pod's namespaces: the node's where `hostNetwork`, `hostPID` and
/// `hostIPC` ask for them. Returns `hostNetwork` too (the sandbox's
/// hostname depends on it).
pub(super) fn pod_namespaces(spec: &Fields<'_>) -> (NamespaceOption, bool) {
    let host_network = spec.bool("hostNetwork").unwrap_or(false);
    let host_pid = spec.bool("hostPID").unwrap_or(false);
    let host_ipc = spec.bool("hostIPC").unwrap_or(false);
    let namespaces = NamespaceOption {
        network: if host_network { NODE } else { POD },
        pid: if host_pid { NODE } else { CONTAINER },
        ipc: if host_ipc { NODE } else { POD },
        ..Default::default()
    };
    (namespaces, host_network)
}

/// The sandbox's security context.
pub(super) fn sandbox_security(namespaces: &NamespaceOption) -> LinuxSandboxSecurityContext {
    LinuxSandboxSecurityContext {
        namespace_options: Some(namespaces.clone()),
        // No pod-level seccompProfile, and the kubelet's
        // --seccomp-default is off: unconfined, as the kubelet does.
        seccomp: Some(unconfined()),
        ..Default::default()
    }
}

/// A container's security context, as the runtime gets it, and what the
/// kubelet checks itself before creating the container.
pub(super) struct ContainerSecurity {
    pub(super) context: LinuxContainerSecurityContext,
    /// runAsNonRoot: the kubelet checks the uid against the image's user.
    pub(super) run_as_non_root: bool,
    pub(super) run_as_user: Option<i64>,
}

/// The container's `securityContext` (no pod-level one to merge: a
/// pod-level securityContext would stay unread and be reported).
pub(super) fn container_security(
    c: &Fields<'_>,
    namespaces: &NamespaceOption,
) -> ContainerSecurity {
    let sc = c.obj("securityContext");
    let mut ctx = LinuxContainerSecurityContext {
        namespace_options: Some(namespaces.clone()),
        masked_paths: MASKED_PATHS.iter().map(|s| (*s).to_owned()).collect(),
        readonly_paths: READONLY_PATHS.iter().map(|s| (*s).to_owned()).collect(),
        seccomp: Some(unconfined()),
        ..Default::default()
    };
    let mut run_as_non_root = false;
    let mut run_as_user = None;
    if let Some(sc) = &sc {
        ctx.privileged = sc.bool("privileged").unwrap_or(false);
        if ctx.privileged {
            // A privileged container sees everything: nothing is masked.
            ctx.masked_paths.clear();
            ctx.readonly_paths.clear();
        }
        run_as_user = sc.i64("runAsUser");
        ctx.run_as_user = run_as_user.map(|value| Int64Value { value });
        ctx.run_as_group = sc.i64("runAsGroup").map(|value| Int64Value { value });
        run_as_non_root = sc.bool("runAsNonRoot").unwrap_or(false);
        ctx.readonly_rootfs = sc.bool("readOnlyRootFilesystem").unwrap_or(false);
        // The kubelet sets no_new_privs only for an explicit false.
        ctx.no_new_privs = sc.bool("allowPrivilegeEscalation") == Some(false);
        if let Some(caps) = sc.obj("capabilities") {
            ctx.capabilities = Some(capabilities(&caps));
        }
        if let Some(profile) = sc.obj("seccompProfile") {
            seccomp(&profile, &mut ctx);
        }
    }
    ContainerSecurity {
        context: ctx,
        run_as_non_root,
        run_as_user,
    }
}

/// `capabilities`: names as written ("BPF"); the runtime adds the CAP_
/// prefix.
fn capabilities(caps: &Fields<'_>) -> Capability {
    Capability {
        add_capabilities: caps.strings("add"),
        drop_capabilities: caps.strings("drop"),
        ..Default::default()
    }
}

/// `seccompProfile`: RuntimeDefault, or Unconfined (the default already).
fn seccomp(profile: &Fields<'_>, ctx: &mut LinuxContainerSecurityContext) {
    match profile.str("type").expect("seccompProfile.type") {
        "RuntimeDefault" => {
            ctx.seccomp = Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                ..Default::default()
            });
        }
        "Unconfined" => {}
        other => profile.unhandled("type", other),
    }
}

fn unconfined() -> SecurityProfile {
    SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        ..Default::default()
    }
}
