//! The event ABI shared by the eBPF programs and the userspace agent.
//!
//! Every record the kernel side writes into the ring buffer starts with an
//! [`EventHeader`]; its `kind` says which of the structs below follows.
//! All structs are `#[repr(C)]`, hold only fixed-width integers and byte
//! arrays, make their padding explicit, and have their sizes pinned by
//! compile-time asserts, so that a change on one side cannot silently
//! disagree with the other.
//!
//! With the `user` feature this crate also provides the length-checked
//! decoder used by userspace ([`decode`]).
#![cfg_attr(not(feature = "user"), no_std)]

#[cfg(feature = "user")]
pub mod decode;
mod events;
mod globals;
mod maps;
mod memstats;
pub mod names;
mod oom;
#[cfg(feature = "user")]
pub mod stale;

pub use events::*;
pub use globals::*;
pub use maps::*;
pub use memstats::*;
pub use oom::*;

/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of a cgroup path carried by cgroup lifecycle events (truncated, NUL padded).
pub const CGROUP_PATH_LEN: usize = 256;
/// Marks a field offset that the running kernel does not have.
pub const OFFSET_ABSENT: u32 = u32::MAX;
/// How many memcg ancestors the programs walk (watch filter, `oom_lock` search).
pub const MAX_CGROUP_DEPTH: u32 = 12;
/// `si_code` of a signal sent by the kernel itself (the OOM killer's SIGKILL).
pub const SI_KERNEL: i32 = 0x80;
