//! What the caller decides about loading: plain values, built by the modes
//! from their flags (`cli::trace`), never flags themselves.
use std::path::PathBuf;

/// Which program sees OOM kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OomSourceChoice {
    /// tp_btf where the kernel offers it, else the classic tracepoint.
    Auto,
    /// tp_btf only (6.8+ kernels pass the victim's task).
    TpBtf,
    /// The classic tracepoint only (any kernel).
    Tracepoint,
}

#[derive(Clone, Debug)]
pub(crate) struct LoadOptions {
    /// cgroup v1 hierarchy id of the memory controller; 0 on cgroup v2.
    pub memory_hierarchy: u32,
    /// Record OOM kills and SIGKILLs in every memcg (the node agent).
    pub oom_all: bool,
    pub alloc_step_bytes: u64,
    pub ring_buffer_bytes: u32,
    pub oom_source: OomSourceChoice,
    /// Programs not to attach (`--skip-hook`), by program name.
    pub skip_hooks: Vec<String>,
    /// Take stacks at kills and growth steps (call sites).
    pub callsites: bool,
    /// Kernel BTF file.
    pub btf_path: PathBuf,
}
