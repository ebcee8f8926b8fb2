//! Call sites, as the kernel keeps them: the stacks (`STACKS`) and the
//! ramp's bytes per (memcg, user stack) (`CALLSITES`). Read at a kill.
use std::collections::HashSet;

use aya::maps::{HashMap, MapData, StackTraceMap};
use oom_tracer_common::{CALLSITES_MAX, CallsiteKey};

/// A stack as the kernel gave it: its frames' addresses, innermost first,
/// or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawStack {
    Frames(Vec<u64>),
    /// `bpf_get_stackid` failed with this errno (e.g. `EFAULT`: no user
    /// stack; `EEXIST`: its bucket held another stack).
    NotTaken(i32),
    /// The id was given but the stack is no longer in the map.
    Gone,
}

/// What the kernel knew of a kill's call sites, read at the kill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawCallsites {
    /// The trigger's user stack and the kernel stack of its charge.
    pub trigger: Option<(RawStack, RawStack)>,
    /// The ramp's sites in the memcg: bytes, the process and its user
    /// stack, largest first (at most `top` of them).
    pub sites: Vec<(u64, u32, RawStack)>,
    /// Bytes of all sites of the memcg (the share's denominator).
    pub total_bytes: u64,
    /// Sites of the memcg.
    pub count: usize,
}

/// The maps, where call sites are on.
pub(crate) struct CallsiteMaps {
    stacks: StackTraceMap<MapData>,
    sums: HashMap<MapData, CallsiteKey, u64>,
    /// Stacks of kills' triggers, by memcg, removed with the memcg.
    triggers: Vec<(u64, u32)>,
    /// Processes that ended: their sums are dropped at the next walk (the
    /// memory they grew went with them).
    ended: HashSet<u32>,
}

impl CallsiteMaps {
    pub(super) fn new(
        stacks: StackTraceMap<MapData>,
        sums: HashMap<MapData, CallsiteKey, u64>,
    ) -> Self {
        Self {
            stacks,
            sums,
            triggers: Vec::new(),
            ended: HashSet::new(),
        }
    }

    /// The stack `id` (a negative id: the helper's errno).
    pub(crate) fn stack(&self, id: i32) -> RawStack {
        let Ok(key) = u32::try_from(id) else {
            return RawStack::NotTaken(-id);
        };
        match self.stacks.get(&key, 0) {
            Ok(s) => RawStack::Frames(s.frames().iter().map(|f| f.ip).collect()),
            Err(_) => RawStack::Gone,
        }
    }

    /// The `top` largest sites of the memcgs `memcgs`, with the total.
    /// Walks the whole map (at most `CALLSITES_MAX` entries, two syscalls
    /// each): about a millisecond per thousand entries.
    pub(crate) fn sites(&mut self, memcgs: &[u64], top: usize) -> RawCallsites {
        let mut mine: Vec<(u64, u32, u32)> = Vec::new();
        let mut stale = Vec::new();
        let entries = self.sums.iter().filter_map(Result::ok);
        for (key, bytes) in entries.take(CALLSITES_MAX as usize) {
            if self.ended.contains(&key.tgid) {
                stale.push(key);
            } else if memcgs.contains(&key.memcg_id) {
                mine.push((bytes, key.tgid, key.stack_id));
            }
        }
        for key in stale {
            let _ = self.sums.remove(&key);
        }
        self.ended.clear();
        // One stack of one process in two memcgs (it moved): summed.
        mine.sort_unstable_by_key(|&(_, tgid, id)| (tgid, id));
        mine.dedup_by(|b, a| {
            let same = (a.1, a.2) == (b.1, b.2);
            if same {
                a.0 += b.0;
            }
            same
        });
        mine.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
        RawCallsites {
            trigger: None,
            total_bytes: mine.iter().map(|s| s.0).sum(),
            count: mine.len(),
            sites: mine
                .iter()
                .take(top)
                .map(|&(bytes, tgid, id)| (bytes, tgid, self.stack(id as i32)))
                .collect(),
        }
    }

    /// Process `tgid` ended (or, with `false`, grows again: a pid reused).
    pub(crate) fn process_ended(&mut self, tgid: u32, ended: bool) {
        if ended {
            if self.ended.len() < CALLSITES_MAX as usize {
                self.ended.insert(tgid);
            }
        } else {
            self.ended.remove(&tgid);
        }
    }

    /// The trigger's stacks of a kill in `memcg` (ids from its record).
    pub(crate) fn trigger(&mut self, memcg: u64, user: i32, kernel: i32) -> (RawStack, RawStack) {
        for id in [user, kernel] {
            if let Ok(id) = u32::try_from(id)
                && self.triggers.len() < CALLSITES_MAX as usize
            {
                self.triggers.push((memcg, id));
            }
        }
        (self.stack(user), self.stack(kernel))
    }

    /// The memcg is gone: drop its sums, and its stacks that no other
    /// memcg's sums use (the stack map has a bucket per id and no LRU).
    pub(crate) fn forget(&mut self, memcg: u64) {
        let (mine, others): (Vec<CallsiteKey>, Vec<CallsiteKey>) = self
            .sums
            .keys()
            .filter_map(Result::ok)
            .partition(|k| k.memcg_id == memcg);
        let mut ids: Vec<u32> = mine.iter().map(|k| k.stack_id).collect();
        for k in mine {
            let _ = self.sums.remove(&k);
        }
        self.triggers.retain(|&(m, id)| {
            if m == memcg {
                ids.push(id);
            }
            m != memcg
        });
        for id in ids {
            let used = others.iter().any(|k| k.stack_id == id)
                || self.triggers.iter().any(|&(_, t)| t == id);
            if !used {
                let _ = self.stacks.remove(&id);
            }
        }
    }
}
