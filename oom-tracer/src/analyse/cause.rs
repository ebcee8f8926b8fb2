//! The cause of an OOM kill in words: the largest part of what filled the
//! cgroup that hit its limit, and its share of that limit.
use crate::{
    quantity::format_bytes,
    schema::{Breakdown, Cause, Part},
};

/// The cause, from the breakdown of the memcg that hit `limit_bytes` and the
/// victim's own RSS (`None` where it was not read).
pub(crate) fn cause(b: &Breakdown, limit_bytes: u64, victim_rss: Option<u64>) -> Cause {
    let parts = [
        (Part::Anon, b.anon_bytes),
        (Part::File, b.file_bytes),
        (Part::Shmem, b.shmem_bytes),
        (Part::Kernel, b.kernel_bytes),
        (Part::Sock, b.sock_bytes.unwrap_or(0)),
    ];
    // The first of the largest: anon wins a tie, as the most common cause.
    let (part, bytes) =
        parts.iter().copied().fold(
            (Part::Anon, 0),
            |best, p| if p.1 > best.1 { p } else { best },
        );
    let share = bytes
        .saturating_mul(100)
        .checked_div(limit_bytes)
        .map_or(0, |s| u32::try_from(s).unwrap_or(u32::MAX));
    let mut text = format!(
        "{} {share}% of the {} limit",
        part.words(),
        format_bytes(limit_bytes)
    );
    if let Some(rss) = victim_rss {
        text.push_str(&format!("; the victim's own RSS was {}", format_bytes(rss)));
    }
    Cause {
        part,
        bytes,
        share_of_limit_pct: share,
        victim_rss_bytes: victim_rss,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{KernelParts, MemoryEvents};

    fn breakdown(anon: u64, file: u64, shmem: u64, kernel: u64) -> Breakdown {
        Breakdown {
            anon_bytes: anon,
            file_bytes: file,
            shmem_bytes: shmem,
            kernel_bytes: kernel,
            sock_bytes: None,
            swap_bytes: None,
            kernel: KernelParts {
                slab_reclaimable_bytes: 0,
                slab_unreclaimable_bytes: 0,
                kernel_stack_bytes: 0,
                pagetables_bytes: 0,
                percpu_bytes: 0,
            },
            events: MemoryEvents {
                max: 0,
                oom: 1,
                oom_kill: 1,
            },
            pending_updates: 0,
        }
    }

    #[test]
    fn the_largest_part_and_its_share() {
        let mib = 1 << 20;
        let c = cause(
            &breakdown(3 * mib, mib, 39 * mib, 2 * mib),
            50 * mib,
            Some(3 * mib),
        );
        assert_eq!(c.part, Part::Shmem);
        assert_eq!(c.share_of_limit_pct, 78);
        assert_eq!(
            c.text,
            "tmpfs/shmem 78% of the 50Mi limit; the victim's own RSS was 3Mi"
        );
        let c = cause(&breakdown(48 * mib, 0, 0, mib), 50 * mib, None);
        assert_eq!((c.part, c.share_of_limit_pct), (Part::Anon, 96));
        assert_eq!(c.text, "anonymous memory 96% of the 50Mi limit");
        assert_eq!(cause(&breakdown(0, 0, 0, 0), 0, None).share_of_limit_pct, 0);
    }
}
