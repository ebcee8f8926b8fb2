//! The kernel side as userspace sees it: BTF offsets (`offsets.rs`), the
//! hooks and their capability probe (`hooks.rs`), loading (`loader.rs`;
//! attaching in `loader/attach.rs`), and the loaded tracer with its ring buffer (`tracer.rs`), whose reader
//! asks the scheduler for short slices (`wakeup.rs`). Callers hand it
//! plain options (`options.rs`).
pub(crate) mod callsites;
pub(crate) mod hooks;
pub(crate) mod loader;
pub(crate) mod memstat;
pub(crate) mod offsets;
pub(crate) mod options;
pub(crate) mod startup;
pub(crate) mod tracer;
mod wakeup;
