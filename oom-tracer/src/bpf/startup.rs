//! Starting the tracer: the object loaded with call sites, or, where the
//! programs that take stacks refuse them, without.
use super::{
    hooks::{MARK_VICTIM_BTF, MARK_VICTIM_TP, RSS_STAT_BTF, RSS_STAT_TP},
    loader::{LoadError, load_with},
    options::LoadOptions,
    tracer::Tracer,
};

/// Loads the object, attaches what this kernel allows, and returns the
/// tracer. Fails only when no OOM source could attach. Call sites that
/// keep a program from loading (or the object) are turned off, with a
/// line saying why, and the rest loaded again without them.
pub(crate) fn load(opts: &LoadOptions) -> Result<Tracer, LoadError> {
    if !opts.callsites {
        tracing::info!("call sites off (--callsites false)");
        return load_with(opts, false);
    }
    let first = match load_with(opts, true) {
        Ok(t) if t.callsites_failed.is_none() => {
            tracing::info!(
                "call sites: on (stacks at each OOM kill and each growth step; at most {} stacks and {} sums in the kernel)",
                oom_tracer_common::STACKS_MAX,
                oom_tracer_common::CALLSITES_MAX
            );
            return Ok(t);
        }
        other => other,
    };
    let why = match &first {
        Ok(t) => t.callsites_failed.clone().unwrap_or_default(),
        Err(e) => crate::errors::chain(e),
    };
    let mut second = load_with(opts, false)?;
    // The same programs failing without stacks: the stacks were not the
    // cause; keep the first load (call sites on where they loaded).
    if let Ok(mut first) = first
        && missing_stack_hooks(&first) == missing_stack_hooks(&second)
    {
        drop(second);
        if let Some(maps) = first.callsites_maps.take() {
            first.callsites = Some(maps);
        }
        first.callsites_failed = None;
        return Ok(first);
    }
    tracing::warn!(
        "call sites off: the programs that take stacks did not load with them ({why}); loaded them without"
    );
    second.callsites_failed = Some(why);
    Ok(second)
}

/// The programs that take stacks and did not attach.
fn missing_stack_hooks(t: &Tracer) -> Vec<String> {
    let labels = [MARK_VICTIM_BTF, MARK_VICTIM_TP, RSS_STAT_BTF, RSS_STAT_TP].map(|h| h.label());
    t.hooks()
        .missing
        .iter()
        .filter(|m| labels.contains(&m.hook))
        .map(|m| m.hook.clone())
        .collect()
}
