//! `oom-tracer check`: what this kernel and machine offer.

use serde::Serialize;

use crate::{
    bpf::{
        loader::{LoadOptions, Tracer},
        offsets::VMLINUX,
    },
    cgroup::MemoryHierarchy,
    cli::CheckArgs,
    output::Format,
    record::HookStatus,
    host::kernel_release,
    tracefs,
};

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub kernel: String,
    pub btf: bool,
    pub tracefs: Option<String>,
    pub tracefs_error: Option<String>,
    pub cgroup_version: Option<String>,
    pub memory_mount: Option<String>,
    pub memory_hierarchy_id: Option<u32>,
    pub cgroup_error: Option<String>,
    pub euid: u32,
    /// Effective capabilities that matter: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN.
    pub capabilities: Vec<String>,
    pub hooks: Option<HookStatus>,
    pub load_error: Option<String>,
    /// Whether an OOM source attached: oom-tracer can do its job here.
    pub ok: bool,
}

fn effective_caps() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    [(21, "CAP_SYS_ADMIN"), (38, "CAP_PERFMON"), (39, "CAP_BPF")]
        .iter()
        .filter(|(bit, _)| eff & (1u64 << bit) != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect()
}

pub fn check(args: &CheckArgs) -> CheckReport {
    let (tracefs_path, tracefs_error) = match tracefs::root() {
        Ok(p) => (Some(p.display().to_string()), None),
        Err(e) => (None, Some(crate::bpf::hooks::error_chain(&e))),
    };
    let h = MemoryHierarchy::detect();
    let (mut report, hid) = match &h {
        Ok(h) => (
            CheckReport {
                cgroup_version: Some(format!("{:?}", h.version).to_lowercase()),
                memory_mount: Some(h.mount.display().to_string()),
                memory_hierarchy_id: Some(h.hierarchy_id),
                cgroup_error: None,
                ..empty()
            },
            h.hierarchy_id,
        ),
        Err(e) => (
            CheckReport {
                cgroup_error: Some(e.to_string()),
                ..empty()
            },
            0,
        ),
    };
    report.btf = args.btf.exists();
    report.tracefs = tracefs_path;
    report.tracefs_error = tracefs_error;
    match Tracer::load(LoadOptions {
        memory_hierarchy: hid,
        watch_all: false,
        oom_all: false,
        alloc_step_bytes: 4 << 20,
        ring_buffer_bytes: 4096 * 16,
        oom_source: args.oom_source,
        skip_hooks: Vec::new(),
        btf_path: args.btf.clone(),
    }) {
        Ok(t) => {
            report.ok = true;
            report.hooks = Some(t.report.status.clone());
        }
        Err(e) => report.load_error = Some(crate::bpf::hooks::error_chain(&e)),
    }
    report
}

fn empty() -> CheckReport {
    CheckReport {
        kernel: kernel_release(),
        btf: false,
        tracefs: None,
        tracefs_error: None,
        cgroup_version: None,
        memory_mount: None,
        memory_hierarchy_id: None,
        cgroup_error: None,
        // SAFETY: geteuid cannot fail.
        euid: unsafe { libc::geteuid() },
        capabilities: effective_caps(),
        hooks: None,
        load_error: None,
        ok: false,
    }
}

pub fn print(report: &CheckReport, format: Format) {
    match format {
        Format::Json => println!("{}", serde_json::to_string(report).unwrap_or_default()),
        Format::Pretty => {
            let yn = |b: bool| if b { "yes" } else { "NO" };
            println!("kernel            {}", report.kernel);
            println!("BTF               {} ({VMLINUX})", yn(report.btf));
            match (&report.tracefs, &report.tracefs_error) {
                (Some(p), _) => println!("tracefs           {p}"),
                (None, Some(e)) => println!("tracefs           NO: {e}"),
                _ => {}
            }
            match (&report.cgroup_version, &report.cgroup_error) {
                (Some(v), _) => println!(
                    "memory cgroup     {v} at {} (hierarchy {})",
                    report.memory_mount.as_deref().unwrap_or("?"),
                    report.memory_hierarchy_id.unwrap_or(0)
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
