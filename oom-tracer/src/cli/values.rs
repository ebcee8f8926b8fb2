//! Flag values: parsing and checking, with messages that say what is wrong.
use std::time::Duration;

use crate::{
    bpf::hooks::{
        ANALYSIS, FALLBACKS, LIFECYCLE, MARK_VICTIM_BTF, MARK_VICTIM_TASKS, MARK_VICTIM_TP,
    },
    quantity,
};

pub(super) fn parse_quantity(s: &str) -> Result<u64, String> {
    quantity::parse_memory(s).map_err(|e| e.to_string())
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration (e.g. 10s, 5m, 250ms): {e}"))
}

pub(super) fn parse_ring_size(s: &str) -> Result<u32, String> {
    let b = parse_quantity(s)?;
    if b < 4096 || !b.is_power_of_two() || b > (1 << 30) {
        return Err(format!(
            "{s:?}: the ring buffer size must be a power of two between 4Ki and 1Gi"
        ));
    }
    Ok(b as u32)
}

/// A memory limit or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limit(pub Option<u64>);

pub(super) fn parse_limit(s: &str) -> Result<Limit, String> {
    if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("max") {
        return Ok(Limit(None));
    }
    parse_quantity(s).map(|b| Limit(Some(b)))
}

/// A hook to skip, by label or program name; returns the program name.
pub(super) fn parse_hook(s: &str) -> Result<String, String> {
    let s = s.trim();
    let skippable = || {
        LIFECYCLE
            .iter()
            .chain(FALLBACKS.iter().map(|(_, classic)| classic))
            .chain([&MARK_VICTIM_TASKS])
            .chain(&ANALYSIS)
    };
    if let Some(h) = skippable().find(|h| h.program == s || h.label() == s) {
        return Ok(h.program.to_owned());
    }
    if [MARK_VICTIM_BTF, MARK_VICTIM_TP]
        .iter()
        .any(|h| h.program == s || h.label() == s)
    {
        return Err(format!(
            "{s:?} is an OOM source and cannot be skipped (see --oom-source)"
        ));
    }
    let known: Vec<String> = skippable().map(|h| h.label()).collect();
    Err(format!("unknown hook {s:?}; one of: {}", known.join(", ")))
}
