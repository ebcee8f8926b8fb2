//! Reclaim pressure before a kill: the kernel sums reclaim at each watched
//! cgroup's limit (`PressureStat`, per cgroup); this keeps the last seconds
//! of those sums to say how the pressure built up, writes `pressure`
//! records at a bounded rate while it lasts, and a `near_miss` when a
//! cgroup stalled at its limit and no OOM kill followed.
use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use oom_tracer_common::PressureStat;

use crate::schema::{Pressure, Timestamp};

/// The window an `oom_kill` record sums.
pub(crate) const KILL_WINDOW: Duration = Duration::from_secs(10);
/// No reclaim for this long ends a stall.
const QUIET: Duration = Duration::from_secs(3);

/// When to write.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PressureOptions {
    /// At most one `pressure` record per cgroup this often.
    pub(crate) interval: Duration,
    /// A stall this long without an OOM kill is a near miss.
    pub(crate) near_miss_after: Duration,
    pub(crate) page_size: u64,
}

/// What the tracker found on a tick, for cgroup `memcg`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Finding {
    Pressure {
        memcg: u64,
        pressure: Pressure,
    },
    NearMiss {
        memcg: u64,
        since: Timestamp,
        pressure: Pressure,
    },
}

#[derive(Debug, Default)]
struct Track {
    /// Samples of the kernel's running sums, oldest first.
    history: VecDeque<(Timestamp, PressureStat)>,
    /// The current stall: when it began, and the sums then.
    stall: Option<(Timestamp, PressureStat)>,
    near_miss_written: bool,
    /// The sums at the last `pressure` record.
    last_record: Option<(Timestamp, PressureStat)>,
    last_kill: Option<Timestamp>,
}

pub(crate) struct PressureTracker {
    opts: PressureOptions,
    cgroups: HashMap<u64, Track>,
}

impl PressureTracker {
    pub(crate) fn new(opts: PressureOptions) -> Self {
        Self {
            opts,
            cgroups: HashMap::new(),
        }
    }

    /// The sums of `after` since `before` (none: since the cgroup was new).
    fn between(
        &self,
        before: Option<&PressureStat>,
        after: &PressureStat,
        window: Duration,
        last_at: Option<Timestamp>,
    ) -> Pressure {
        let zero = PressureStat::default();
        let b = before.unwrap_or(&zero);
        Pressure {
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            limit_hits: after.limit_hits.saturating_sub(b.limit_hits),
            reclaims: after.reclaims.saturating_sub(b.reclaims),
            fruitless: after.fruitless.saturating_sub(b.fruitless),
            stall_ms: after.stall_ns.saturating_sub(b.stall_ns) / 1_000_000,
            reclaimed_bytes: after
                .reclaimed_pages
                .saturating_sub(b.reclaimed_pages)
                .saturating_mul(self.opts.page_size),
            last_at,
        }
    }

    /// A sample of the kernel's sums for `memcg` at `now` (`last_at`: the
    /// wall-clock time of its last reclaim). Returns what to write.
    pub(crate) fn sample(
        &mut self,
        memcg: u64,
        now: Timestamp,
        stat: PressureStat,
        last_at: Option<Timestamp>,
    ) -> Vec<Finding> {
        let opts = self.opts;
        let mut t = self.cgroups.remove(&memcg).unwrap_or_default();
        let prev = t.history.back().map(|(_, s)| *s);
        let active = prev.map_or(stat.reclaims > 0, |p| stat.reclaims > p.reclaims);
        t.history.push_back((now, stat));
        // Enough to look 10 s back from the next kill.
        while t.history.len() > 1
            && t.history
                .front()
                .is_some_and(|(at, _)| now.since(*at) > KILL_WINDOW + opts.interval)
        {
            t.history.pop_front();
        }
        let mut out = Vec::new();
        if active && t.stall.is_none() {
            t.stall = Some((now, prev.unwrap_or_default()));
            t.near_miss_written = false;
        }
        let quiet = last_at.is_none_or(|l| now.since(l) > QUIET);
        if active {
            let due = t
                .last_record
                .is_none_or(|(at, _)| now.since(at) >= opts.interval);
            if due {
                let (since, base) = t
                    .last_record
                    .unwrap_or((t.stall.map_or(now, |s| s.0), prev.unwrap_or_default()));
                let p = self.between(
                    Some(&base),
                    &stat,
                    now.since(since).max(opts.interval),
                    last_at,
                );
                out.push(Finding::Pressure { memcg, pressure: p });
                t.last_record = Some((now, stat));
            }
        }
        if let Some((since, base)) = t.stall {
            let killed = t.last_kill.is_some_and(|k| k >= since);
            if !killed && !t.near_miss_written && now.since(since) >= opts.near_miss_after {
                let p = self.between(Some(&base), &stat, now.since(since), last_at);
                out.push(Finding::NearMiss {
                    memcg,
                    since,
                    pressure: p,
                });
                t.near_miss_written = true;
            }
            if quiet && !active {
                t.stall = None;
                t.last_record = None;
            }
        }
        self.cgroups.insert(memcg, t);
        out
    }

    /// An OOM kill in `memcg`: no near miss for its current stall, and the
    /// last `KILL_WINDOW` of pressure (`stat`: the sums now, read at the kill).
    pub(crate) fn killed(
        &mut self,
        memcg: u64,
        now: Timestamp,
        stat: Option<PressureStat>,
        last_at: Option<Timestamp>,
    ) -> Option<Pressure> {
        let t = self.cgroups.entry(memcg).or_default();
        t.last_kill = Some(now);
        let stat = stat?;
        let before = t
            .history
            .iter()
            .rev()
            .find(|(at, _)| now.since(*at) >= KILL_WINDOW)
            .map(|(_, s)| *s);
        Some(self.between(before.as_ref(), &stat, KILL_WINDOW, last_at))
    }

    /// The cgroup is gone.
    pub(crate) fn forget(&mut self, memcg: u64) {
        self.cgroups.remove(&memcg);
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(s: u64) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_secs(1_795_802_400 + s))
    }

    fn stat(reclaims: u64, stall_ms: u64) -> PressureStat {
        PressureStat {
            reclaims,
            stall_ns: stall_ms * 1_000_000,
            reclaimed_pages: reclaims * 10,
            fruitless: 0,
            limit_hits: reclaims,
            last_ns: 0,
        }
    }

    fn tracker() -> PressureTracker {
        PressureTracker::new(PressureOptions {
            interval: Duration::from_secs(1),
            near_miss_after: Duration::from_secs(5),
            page_size: 4096,
        })
    }

    #[test]
    fn a_stall_without_a_kill_is_a_near_miss_once() {
        let mut t = tracker();
        let mut found = Vec::new();
        for s in 0..=8 {
            found.extend(t.sample(7, at(s), stat(s * 10, s * 100), Some(at(s))));
        }
        let pressures = found
            .iter()
            .filter(|f| matches!(f, Finding::Pressure { .. }))
            .count();
        assert!(pressures >= 7, "one a second while it lasts: {found:?}");
        let near: Vec<_> = found
            .iter()
            .filter(|f| matches!(f, Finding::NearMiss { .. }))
            .collect();
        assert_eq!(near.len(), 1, "{found:?}");
        let Finding::NearMiss { pressure, .. } = near[0] else {
            panic!()
        };
        assert!(
            pressure.reclaims >= 40 && pressure.stall_ms >= 400,
            "{pressure:?}"
        );
        // Quiet: the stall ends; nothing more is written.
        assert!(t.sample(7, at(20), stat(80, 800), Some(at(8))).is_empty());
    }

    #[test]
    fn a_kill_sums_the_last_ten_seconds_and_is_no_near_miss() {
        let mut t = tracker();
        for s in 0..=12 {
            t.sample(9, at(s), stat(s * 10, s * 100), Some(at(s)));
            if s == 3 {
                t.killed(9, at(3), None, None);
            }
        }
        let p = t
            .killed(9, at(13), Some(stat(130, 1300)), Some(at(13)))
            .unwrap();
        assert_eq!(p.window_ms, 10_000);
        assert_eq!(
            p.reclaims, 100,
            "130 now − 30 at 3 s, the last sample 10 s before"
        );
        assert_eq!(p.stall_ms, 1000);
        assert_eq!(p.reclaimed_bytes, 1000 * 4096);
    }
}
