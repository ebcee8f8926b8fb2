//! The kernel side as userspace sees it: BTF offsets (`offsets.rs`), the
//! hooks and their capability probe (`hooks.rs`), loading and the ring
//! buffer (`loader.rs`).
pub mod hooks;
pub mod loader;
pub mod offsets;
