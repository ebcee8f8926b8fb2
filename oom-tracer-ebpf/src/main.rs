//! oom-tracer's eBPF programs. Each program is named after its attach point
//! and lives in the module named after its subsystem:
//!
//! | program              | attach point                     | module      |
//! |----------------------|----------------------------------|-------------|
//! | `mark_victim`        | tp_btf/mark_victim               | `oom`       |
//! | `oom_mark_victim`    | tracepoint/oom/mark_victim       | `oom`       |
//! | `signal_generate`    | tp_btf/signal_generate           | `signal`    |
//! | `sched_process_exec` | tp_btf/sched_process_exec        | `sched`     |
//! | `sched_process_exit` | tp_btf/sched_process_exit        | `sched`     |
//! | `rss_stat`           | tp_btf/rss_stat                  | `alloc`     |
//! | `kmem_rss_stat`      | tracepoint/kmem/rss_stat         | `alloc`     |
//! | `cgroup_attach_task` | tp_btf/cgroup_attach_task        | `cgroup`    |
//! | `cgroup_mkdir` ...   | tracepoint/cgroup/cgroup_*       | `cgroup`    |
#![no_std]
#![no_main]
// Inline assembly for the one atomic add (`kernel::bump`): the BPF target
// has no compare-and-swap, so Rust offers no `fetch_add` there.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod alloc;
mod cgroup;
mod emit;
mod growth;
mod kernel;
mod maps;
mod memstat;
mod oom;
mod pressure;
mod sched;
mod signal;
mod stacks;
mod tasks;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable panic path; none is reachable.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
