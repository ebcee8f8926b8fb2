//! `oom-tracer check`: what this kernel and machine offer.

use serde::Serialize;

use crate::{
    bpf::startup,
    cgroup::MemoryHierarchy,
    cli::CheckArgs,
    errors,
    host::{effective_caps, kernel_release},
    schema::{CgroupVersion, HookStatus},
    sinks::stdout::Format,
    tracefs,
};

#[derive(Debug, Serialize)]
pub(crate) struct CheckReport {
    pub kernel: String,
    pub btf: bool,
    pub btf_path: String,
    pub tracefs: Option<String>,
    pub tracefs_error: Option<String>,
    pub cgroup_version: Option<CgroupVersion>,
    pub memory_mount: Option<String>,
    pub memory_hierarchy_id: Option<u32>,
    /// mountinfo's root field of that mount: `/`, or the sub-cgroup a
    /// node in a container sees as its whole tree (a bind mount).
    pub memory_root: Option<String>,
    /// Whether this process has a cgroup namespace of its own (`private`;
    /// its /proc/self/cgroup paths start at that namespace's root) or the
    /// host's (`host`); `null` where /proc/1/ns/cgroup cannot be read.
    pub cgroup_namespace: Option<&'static str>,
    pub cgroup_error: Option<String>,
    pub euid: u32,
    /// Effective capabilities that matter: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN.
    pub capabilities: Vec<String>,
    pub hooks: Option<HookStatus>,
    pub load_error: Option<String>,
    /// Whether an OOM source attached: oom-tracer can do its job here.
    pub ok: bool,
}

pub(crate) fn check(args: &CheckArgs) -> CheckReport {
    let (tracefs_path, tracefs_error) = match tracefs::root() {
        Ok(p) => (Some(p.display().to_string()), None),
        Err(e) => (None, Some(errors::chain(&e))),
    };
    let h = MemoryHierarchy::detect();
    let (mut report, hid) = match &h {
        Ok(h) => (
            CheckReport {
                cgroup_version: Some(h.version),
                memory_mount: Some(h.mount.display().to_string()),
                memory_hierarchy_id: Some(h.hierarchy_id),
                memory_root: Some(h.root.clone()),
                cgroup_error: None,
                ..empty()
            },
            h.hierarchy_id,
        ),
        Err(e) => (
            CheckReport {
                cgroup_error: Some(errors::chain(&e)),
                ..empty()
            },
            0,
        ),
    };
    report.btf = args.trace.btf.exists();
    report.btf_path = args.trace.btf.display().to_string();
    report.tracefs = tracefs_path;
    report.tracefs_error = tracefs_error;
    match startup::load(&args.trace.load_options(hid, false)) {
        Ok(t) => {
            report.ok = true;
            report.hooks = Some(t.hooks().clone());
        }
        Err(e) => report.load_error = Some(errors::chain(&e)),
    }
    report
}

fn empty() -> CheckReport {
    CheckReport {
        kernel: kernel_release(),
        btf: false,
        btf_path: String::new(),
        tracefs: None,
        tracefs_error: None,
        cgroup_version: None,
        memory_mount: None,
        memory_hierarchy_id: None,
        memory_root: None,
        cgroup_namespace: cgroup_namespace(),
        cgroup_error: None,
        // SAFETY: geteuid cannot fail.
        euid: unsafe { libc::geteuid() },
        capabilities: effective_caps().into_iter().map(str::to_owned).collect(),
        hooks: None,
        load_error: None,
        ok: false,
    }
}

/// `host` or `private`: this process's cgroup namespace against pid 1's.
fn cgroup_namespace() -> Option<&'static str> {
    let ns = |p: &str| std::fs::read_link(p).ok();
    let (own, init) = (ns("/proc/self/ns/cgroup")?, ns("/proc/1/ns/cgroup")?);
    Some(if own == init { "host" } else { "private" })
}

pub(crate) fn print(report: &CheckReport, format: Format) {
    // `check` writes a report, not records: pretty unless asked for JSON.
    match format {
        Format::Json => println!("{}", serde_json::to_string(report).unwrap_or_default()),
        Format::Pretty => {
            let yn = |b: bool| if b { "yes" } else { "NO" };
            println!("kernel            {}", report.kernel);
            println!("BTF               {} ({})", yn(report.btf), report.btf_path);
            match (&report.tracefs, &report.tracefs_error) {
                (Some(p), _) => println!("tracefs           {p}"),
                (None, Some(e)) => println!("tracefs           NO: {e}"),
                _ => {}
            }
            match (&report.cgroup_version, &report.cgroup_error) {
                (Some(v), _) => println!(
                    "memory cgroup     {} at {} (hierarchy {}, mount root {}, cgroup namespace {})",
                    v.as_str(),
                    report.memory_mount.as_deref().unwrap_or("?"),
                    report.memory_hierarchy_id.unwrap_or(0),
                    report.memory_root.as_deref().unwrap_or("?"),
                    report.cgroup_namespace.unwrap_or("unknown"),
                ),
                (None, Some(e)) => println!("memory cgroup     NO: {e}"),
                _ => {}
            }
            println!(
                "privileges        euid {}, capabilities: {}",
                report.euid,
                if report.capabilities.is_empty() {
                    "none".into()
                } else {
                    report.capabilities.join(" ")
                }
            );
            if let Some(h) = &report.hooks {
                for a in &h.active {
                    println!("hook              {a:<32} attached");
                }
                for m in &h.missing {
                    println!("hook              {:<32} missing: {}", m.hook, m.reason);
                }
            }
            if let Some(e) = &report.load_error {
                println!("load              FAILED: {e}");
            }
            println!(
                "verdict           {}",
                if report.ok {
                    "oom-tracer can trace OOM kills here"
                } else {
                    "oom-tracer cannot trace OOM kills here"
                }
            );
        }
    }
}
