//! Empty library target: `oom-tracer`'s build script depends on this crate so
//! that cargo rebuilds the embedded eBPF object when the programs change.
//! The programs themselves are the `oom-tracer` binary target (src/main.rs),
//! built for `bpfel-unknown-none` by aya-build.
#![no_std]
