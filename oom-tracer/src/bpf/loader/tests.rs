//! The loader's tests: the object has every name it uses.
use oom_tracer_common::names::{GLOBALS, MAPS, PROGRAMS};

use super::OBJECT;
use crate::bpf::hooks;

/// The object defines every name the loader and the hook table use.
#[test]
fn the_object_has_every_name_the_loader_uses() {
    let has = |name: &str| {
        OBJECT
            .windows(name.len() + 1)
            .any(|w| w[..name.len()] == *name.as_bytes() && w[name.len()] == 0)
    };
    for name in MAPS.iter().chain(&GLOBALS).chain(&PROGRAMS) {
        assert!(has(name), "{name} is not in the eBPF object");
    }
    for hook in hooks::LIFECYCLE.iter().chain([
        &hooks::MARK_VICTIM_BTF,
        &hooks::MARK_VICTIM_TP,
        &hooks::RSS_STAT_TP,
    ]) {
        assert!(PROGRAMS.contains(&hook.program), "{}", hook.program);
    }
}
