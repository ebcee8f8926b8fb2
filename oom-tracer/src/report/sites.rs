//! A kill's call sites as the picture shows them: the ramp's largest
//! sites, each named by its innermost named frame and that frame's caller.
use super::model::{KillSite, KillSites};
use crate::schema::{Callsites, Stack};

/// The most sites kept per kill (the record carries at most 5).
pub(super) const MAX_SITES: usize = 5;

/// The kill's sites, largest first, as the record gives them.
pub(super) fn kill_sites(c: &Callsites) -> KillSites {
    KillSites {
        top: c
            .top
            .iter()
            .take(MAX_SITES)
            .map(|s| KillSite {
                frames: frames(&s.stack),
                shallow: s.stack.shallow,
                bytes: s.bytes,
                share_pct: s.share_pct,
            })
            .collect(),
        ramp_bytes: c.ramp_bytes,
        site_count: c.site_count,
    }
}

/// `stress::grow_fast ← stress::main`: the innermost frame with a name
/// (else the innermost frame) and the frame after it, its caller, where
/// the stack has one; `[no stack: gone]` for a stack without frames.
fn frames(s: &Stack) -> String {
    let inner = s
        .frames
        .iter()
        .position(|f| f.symbol.is_some())
        .unwrap_or(0);
    let Some(frame) = s.frames.get(inner) else {
        return match &s.missing {
            Some(why) => format!("[no stack: {why}]"),
            None => "[no stack]".to_owned(),
        };
    };
    match s.frames.get(inner + 1) {
        Some(caller) => format!("{} ← {}", frame.label(), caller.label()),
        None => frame.label(),
    }
}
