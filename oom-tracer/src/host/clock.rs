//! Kernel timestamps (CLOCK_BOOTTIME nanoseconds, from
//! `bpf_ktime_get_boot_ns`) to wall-clock time.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maps CLOCK_BOOTTIME to CLOCK_REALTIME with an offset measured once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BootClock {
    /// realtime − boottime, in nanoseconds.
    offset_ns: i128,
}

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl BootClock {
    /// Measures the offset: the pair of readings taken closest together wins.
    pub(crate) fn measure() -> Self {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..5 {
            let r1 = now_ns(libc::CLOCK_REALTIME);
            let b = now_ns(libc::CLOCK_BOOTTIME);
            let r2 = now_ns(libc::CLOCK_REALTIME);
            let gap = r2 - r1;
            let offset = (r1 + gap / 2) - b;
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, offset));
            }
        }
        Self::from_offset(best.map_or(0, |(_, o)| o))
    }

    pub(crate) const fn from_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// The current CLOCK_BOOTTIME, nanoseconds.
    pub(crate) fn boot_now_ns() -> u64 {
        now_ns(libc::CLOCK_BOOTTIME).max(0) as u64
    }

    /// Wall-clock time of a boot-time stamp.
    pub(crate) fn to_system_time(self, boot_ns: u64) -> SystemTime {
        let ns = boot_ns as i128 + self.offset_ns;
        if ns <= 0 {
            return UNIX_EPOCH;
        }
        let ns = u64::try_from(ns).unwrap_or(u64::MAX);
        UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_conversion() {
        // Booted at 2026-11-27T18:00:00Z.
        let boot_epoch_ns: i128 = 1_795_802_400 * 1_000_000_000;
        let c = BootClock::from_offset(boot_epoch_ns);
        let t = c.to_system_time(61_500_000_000); // 61.5 s after boot
        assert_eq!(
            humantime::format_rfc3339_micros(t).to_string(),
            "2026-11-27T18:01:01.500000Z"
        );
    }

    #[test]
    fn before_epoch_clamps() {
        let c = BootClock::from_offset(-10);
        assert_eq!(c.to_system_time(5), UNIX_EPOCH);
    }

    #[test]
    fn measured_offset_tracks_realtime() {
        let c = BootClock::measure();
        let now = SystemTime::now();
        let t = c.to_system_time(BootClock::boot_now_ns());
        let diff = match t.duration_since(now) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(diff < Duration::from_millis(50), "{diff:?}");
    }
}
