//! A kill's call sites, named as soon as its record is read (the victim
//! dies within milliseconds: its mappings may be gone a moment later).
use std::time::Instant;

use oom_tracer_common::OomEvent;

use crate::{
    bpf::callsites::{RawCallsites, RawStack},
    schema::{Callsites, Frame, Site, Stack},
    symbols::{Ask, Symbols},
};

/// Sites a kill carries.
pub(super) const TOP_SITES: usize = 5;
/// How the kernel unwinds every stack here (`bpf_get_stackid`).
const UNWINDER: &str = "frame_pointers";
/// At most this many frames: a stack no deeper is `shallow`.
const SHALLOW_DEPTH: u32 = 2;
/// How long one drain waits for its kills' frames to be named, in all
/// (names come from the cache in microseconds; a binary whose symbols were
/// not read ahead may take longer: its frames then stay unnamed, with
/// their module, offset and build id).
pub(super) const NAMING_BUDGET: std::time::Duration = std::time::Duration::from_millis(50);

/// Names the kernel's call sites of a kill whose trigger is process `tgid`:
/// every stack in one ask of the naming thread.
pub(super) fn name(raw: RawCallsites, tgid: u32, symbols: &mut Symbols) -> Callsites {
    let started = Instant::now();
    symbols.begin(NAMING_BUDGET);
    // The trigger's user and kernel stacks, then the sites', in this order.
    let mut stacks: Vec<(RawStack, Option<u32>)> = Vec::new();
    let has_trigger = raw.trigger.is_some();
    if let Some((u, k)) = raw.trigger {
        stacks.push((u, Some(tgid)));
        stacks.push((k, None));
    }
    let mut bytes = Vec::new();
    for (b, site_tgid, s) in raw.sites {
        bytes.push(b);
        stacks.push((s, Some(site_tgid)));
    }
    let asks = stacks
        .iter()
        .filter_map(|(s, who)| match (s, who) {
            (RawStack::Frames(ips), Some(t)) => Some(Ask::User(*t, ips.clone())),
            (RawStack::Frames(ips), None) => Some(Ask::Kernel(ips.clone())),
            _ => None,
        })
        .collect();
    let mut named = symbols.name(asks).into_iter();
    let mut named = stacks
        .into_iter()
        .map(|(s, _)| stack(s, |_| named.next().unwrap_or_default()));
    let (user, kernel) = if has_trigger {
        (
            named.next().unwrap_or_default(),
            named.next().unwrap_or_default(),
        )
    } else {
        (missing("off"), missing("off"))
    };
    let total = raw.total_bytes;
    let top = bytes
        .into_iter()
        .zip(named)
        .map(|(bytes, stack)| Site {
            bytes,
            share_pct: share(bytes, total),
            stack,
        })
        .collect();
    tracing::debug!(
        "call sites of a kill named in {} µs",
        started.elapsed().as_micros()
    );
    Callsites {
        unwinder: UNWINDER.to_owned(),
        trigger_user: user,
        trigger_kernel: kernel,
        top,
        ramp_bytes: total,
        site_count: raw.count as u64,
    }
}

/// Percent of `total`, to a tenth.
fn share(bytes: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    (bytes as f64 * 1000.0 / total as f64).round() / 10.0
}

fn stack(raw: RawStack, name: impl FnOnce(&[u64]) -> Vec<Frame>) -> Stack {
    match raw {
        RawStack::Frames(ips) => {
            let depth = u32::try_from(ips.len()).unwrap_or(u32::MAX);
            let shallow = depth <= SHALLOW_DEPTH;
            let mut frames = name(&ips);
            if shallow {
                // The first frame is where the task was; a caller found by
                // a chain that stopped at once may not be its caller.
                for f in frames.iter_mut().skip(1) {
                    f.unsure = true;
                }
            }
            Stack {
                frames,
                depth,
                shallow,
                missing: None,
            }
        }
        RawStack::NotTaken(errno) => missing(&format!(
            "not_taken ({})",
            std::io::Error::from_raw_os_error(errno)
        )),
        RawStack::Gone => missing("gone"),
    }
}

fn missing(why: &str) -> Stack {
    Stack {
        missing: Some(why.to_owned()),
        ..Stack::default()
    }
}

/// The memcgs whose sites a kill counts: the victim's, and the one that
/// hit its limit where it is another (a pod-level limit).
pub(super) fn memcgs_of(e: &OomEvent, victim_memcg: u64) -> Vec<u64> {
    let mut m = vec![victim_memcg];
    if e.oom_memcg_id != 0 && e.oom_memcg_id != victim_memcg {
        m.push(e.oom_memcg_id);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_percent_to_a_tenth() {
        assert_eq!(share(1, 3), 33.3);
        assert_eq!(share(0, 0), 0.0);
        assert_eq!(share(5, 5), 100.0);
    }

    #[test]
    fn one_or_two_frames_are_shallow_and_a_failed_stack_says_why() {
        let s = stack(RawStack::Frames(vec![1, 2]), |ips| {
            ips.iter().map(|_| Frame::default()).collect()
        });
        assert!(s.shallow);
        assert_eq!(s.depth, 2);
        assert!(!s.frames[0].unsure && s.frames[1].unsure);
        let s = stack(RawStack::NotTaken(14), |_| unreachable!());
        assert!(s.missing.unwrap().starts_with("not_taken"));
        assert!(s.frames.is_empty());
    }
}
