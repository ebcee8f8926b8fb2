//! Call sites, as the kernel keeps them: the stacks (`STACKS`) and the
//! ramp's bytes per (memcg, user stack) (`CALLSITES`). Read at a kill.
use std::collections::{HashMap as StdHashMap, HashSet};

use aya::maps::{HashMap, MapData, StackTraceMap};
use oom_tracer_common::{CALLSITES_MAX, CallsiteKey};

/// Stacks kept read (a few hundred bytes each); the cache starts over
/// when full.
const STACKS_KEPT: usize = 1024;

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
///
/// A kill reads its memcg's sums by key, never by walking the map: every
/// sum the kernel adds to comes with a growth record naming its key
/// (`grew`), so the keys are known here. Only when records were lost (a
/// full ring buffer) can a key be missing: the first kill after the loss
/// was read walks the map once (about a millisecond per thousand entries)
/// and knows them again (a kill in the very drain that lost records may
/// miss the sites whose records were lost).
///
/// Stacks are read once per id: the kernel never changes the stack of an
/// id (`bpf_get_stackid` without `BPF_F_REUSE_STACKID`), and only
/// `forget` here removes one. A crash loop's kills share their kernel
/// stack.
pub(crate) struct CallsiteMaps {
    stacks: StackTraceMap<MapData>,
    sums: HashMap<MapData, CallsiteKey, u64>,
    /// Stacks of kills' triggers, by memcg, removed with the memcg.
    triggers: Vec<(u64, u32)>,
    /// The keys of the sums, by process.
    known: StdHashMap<u32, HashSet<CallsiteKey>>,
    /// Keys in `known`.
    known_len: usize,
    /// `known` may miss keys: walk the map before it is used.
    walk: bool,
    /// The kernel's count of records lost when `known` was last whole.
    losses_seen: u64,
    /// Stacks read, by id.
    read: StdHashMap<u32, Vec<u64>>,
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
            known: StdHashMap::new(),
            known_len: 0,
            walk: false,
            losses_seen: 0,
            read: StdHashMap::new(),
        }
    }

    /// The stack `id` (a negative id: the helper's errno).
    pub(crate) fn stack(&mut self, id: i32) -> RawStack {
        let Ok(key) = u32::try_from(id) else {
            return RawStack::NotTaken(-id);
        };
        if let Some(ips) = self.read.get(&key) {
            return RawStack::Frames(ips.clone());
        }
        match self.stacks.get(&key, 0) {
            Ok(s) => {
                let ips: Vec<u64> = s.frames().iter().map(|f| f.ip).collect();
                if self.read.len() >= STACKS_KEPT {
                    self.read.clear();
                }
                self.read.insert(key, ips.clone());
                RawStack::Frames(ips)
            }
            Err(_) => RawStack::Gone,
        }
    }

    /// A growth record: its bytes went to the sum of `stack_id` (negative:
    /// none) of process `tgid` in `memcg`.
    pub(crate) fn grew(&mut self, memcg: u64, tgid: u32, stack_id: i32) {
        let Ok(stack_id) = u32::try_from(stack_id) else {
            return;
        };
        // The kernel keeps at most `CALLSITES_MAX` (LRU): more known keys
        // are stale ones; a walk finds the live ones.
        if self.known_len >= 2 * CALLSITES_MAX as usize {
            self.walk = true;
            return;
        }
        let key = CallsiteKey {
            memcg_id: memcg,
            stack_id,
            tgid,
        };
        if self.known.entry(tgid).or_default().insert(key) {
            self.known_len += 1;
        }
    }

    /// Records were lost (the kernel's count, `losses`): keys may be
    /// missing from what the growth records said.
    fn check_losses(&mut self, losses: u64) {
        if losses != self.losses_seen {
            self.losses_seen = losses;
            self.walk = true;
        }
    }

    /// Walks the map and knows its keys again.
    fn rebuild(&mut self) {
        self.known.clear();
        self.known_len = 0;
        let keys: Vec<CallsiteKey> = self
            .sums
            .keys()
            .filter_map(Result::ok)
            .take(CALLSITES_MAX as usize)
            .collect();
        for key in keys {
            if self.known.entry(key.tgid).or_default().insert(key) {
                self.known_len += 1;
            }
        }
        self.walk = false;
    }

    /// The `top` largest sites of the memcgs `memcgs`, with the total
    /// (`losses`: the kernel's count of lost records).
    pub(crate) fn sites(&mut self, memcgs: &[u64], top: usize, losses: u64) -> RawCallsites {
        self.check_losses(losses);
        if self.walk {
            self.rebuild();
        }
        let mine_keys: Vec<CallsiteKey> = self
            .known
            .values()
            .flatten()
            .filter(|k| memcgs.contains(&k.memcg_id))
            .copied()
            .collect();
        let mut mine: Vec<(u64, u32, u32)> = Vec::new();
        for key in mine_keys {
            match self.sums.get(&key, 0) {
                Ok(bytes) => mine.push((bytes, key.tgid, key.stack_id)),
                // Evicted (LRU): known no more.
                Err(_) => self.unknow(&key),
            }
        }
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

    fn unknow(&mut self, key: &CallsiteKey) {
        if let Some(keys) = self.known.get_mut(&key.tgid)
            && keys.remove(key)
        {
            self.known_len -= 1;
            if keys.is_empty() {
                self.known.remove(&key.tgid);
            }
        }
    }

    /// Process `tgid` ended: its sums go (the memory they grew went with
    /// it).
    pub(crate) fn process_ended(&mut self, tgid: u32) {
        let Some(keys) = self.known.remove(&tgid) else {
            return;
        };
        self.known_len -= keys.len();
        for key in keys {
            let _ = self.sums.remove(&key);
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
        if self.walk {
            self.rebuild();
        }
        let (mine, others): (Vec<CallsiteKey>, Vec<CallsiteKey>) = self
            .known
            .values()
            .flatten()
            .copied()
            .partition(|k| k.memcg_id == memcg);
        let mut ids: Vec<u32> = mine.iter().map(|k| k.stack_id).collect();
        for k in &mine {
            let _ = self.sums.remove(k);
            self.unknow(k);
        }
        self.triggers.retain(|&(m, id)| {
            if m == memcg {
                ids.push(id);
            }
            m != memcg
        });
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let used = others.iter().any(|k| k.stack_id == id)
                || self.triggers.iter().any(|&(_, t)| t == id);
            if !used {
                let _ = self.stacks.remove(&id);
                self.read.remove(&id);
            }
        }
    }
}
