//! `stress`: a memory hog. It allocates and touches memory in steps until
//! it is killed (or reaches `--max`), printing one JSON line per step:
//!
//! ```text
//! {"event":"step","step":3,"allocated_bytes":15728640,"elapsed_ms":301}
//! ```
//!
//! Every page is written, so the memory is really resident and charged to
//! the process's memory cgroup.
use std::{
    io::Write as _,
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Allocates and touches memory in steps until it is killed"
)]
struct Args {
    /// Bytes per step (Kubernetes-style suffixes: Ki, Mi, Gi, k, M, G).
    #[arg(long, default_value = "5Mi", value_parser = parse_bytes, env = "STRESS_STEP")]
    step: u64,
    /// Pause between steps (e.g. 100ms, 1s).
    #[arg(long, default_value = "100ms", value_parser = humantime_like, env = "STRESS_INTERVAL")]
    interval: Duration,
    /// Stop allocating at this many bytes and stay resident (default: no cap).
    #[arg(long, value_parser = parse_bytes, env = "STRESS_MAX")]
    max: Option<u64>,
    /// With --max: after reaching it, hold the memory this long, then exit 0.
    #[arg(long, value_parser = humantime_like, default_value = "0s", env = "STRESS_HOLD")]
    hold: Duration,
    /// Allocate in a child process; this process waits for the child, then
    /// stays up (holding nothing) for --hold, or forever without --max.
    /// Shows an OOM kill of a process that is not the container's main one.
    #[arg(long, env = "STRESS_IN_CHILD")]
    in_child: bool,
    /// Run as a parent with two children: a sibling that sets its
    /// oom_score_adj to 1000 and holds 2 MiB (the OOM killer's choice),
    /// and one that allocates. Shows a victim that is not the process
    /// that grew.
    #[arg(long, env = "STRESS_WITH_VICTIM_SIBLING")]
    with_victim_sibling: bool,
    /// Set this process's oom_score_adj first (-1000..=1000; raising it
    /// needs no privilege).
    #[arg(long, env = "STRESS_OOM_SCORE_ADJ", allow_hyphen_values = true)]
    oom_score_adj: Option<i32>,
    /// Grow a file in a tmpfs instead of anonymous memory: each step
    /// appends this many bytes to it (an `emptyDir` with `medium: Memory`
    /// fills the same way). The process's own RSS stays small.
    #[arg(long, env = "STRESS_TMPFS_FILE")]
    tmpfs_file: Option<std::path::PathBuf>,
    /// Touch each step's pages from two functions, `grow_fast` (5 pages in
    /// 7) and `grow_slow` (2 in 7), chosen page by page at random: the call
    /// sites a tracer sees must give `grow_fast` about 71% of the bytes.
    /// Step lines carry `fast_bytes` and `slow_bytes`.
    #[arg(long, env = "STRESS_TWO_SITES")]
    two_sites: bool,
    /// Before anything else, wait until this file exists (a benchmark
    /// starts the workload once every tracer is attached; a restart finds
    /// the file and goes on at once).
    #[arg(long, env = "STRESS_WAIT_FOR")]
    wait_for: Option<std::path::PathBuf>,
}

/// Runs the allocation in a child copy of this program and outlives it.
fn run_in_child(args: &Args) -> ExitCode {
    let exe = std::env::current_exe().unwrap_or_else(|_| "stress".into());
    let forwarded = forwarded(&["--in-child"]);
    let status = std::process::Command::new(exe)
        .args(&forwarded)
        .env_remove("STRESS_IN_CHILD")
        .status();
    let _ = writeln!(
        std::io::stdout(),
        "{{\"event\":\"child_ended\",\"status\":\"{}\"}}",
        status.map_or_else(|e| e.to_string(), |s| s.to_string())
    );
    if args.max.is_some() {
        thread::sleep(args.hold);
    } else {
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    ExitCode::SUCCESS
}

/// Parses `10Mi`, `5M`, `4096`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte size (e.g. 5Mi, 512Ki, 1G)"))?;
    let mult: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} (use Ki, Mi, Gi, k, M, G)"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// Parses `100ms`, `2s`, `1m`.
fn humantime_like(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 100ms, 2s)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m)")),
    })
}

/// The arguments this process got, without the flags named in `drop`.
fn forwarded(drop: &[&str]) -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !drop.contains(&a.as_str()))
        .collect()
}

/// A parent with two children: the sibling the OOM killer prefers, and the
/// one that grows. Waits for the grower, then stops the sibling.
fn run_with_victim_sibling() -> ExitCode {
    let exe = std::env::current_exe().unwrap_or_else(|_| "stress".into());
    let sibling = std::process::Command::new(&exe)
        .args([
            "--max",
            "2Mi",
            "--step",
            "2Mi",
            "--hold",
            "3600s",
            "--oom-score-adj",
            "1000",
        ])
        .env_remove("STRESS_WITH_VICTIM_SIBLING")
        .spawn();
    let Ok(mut sibling) = sibling else {
        eprintln!("stress: starting the sibling failed");
        return ExitCode::FAILURE;
    };
    // Let the sibling set its score and touch its memory first.
    thread::sleep(Duration::from_millis(200));
    let status = std::process::Command::new(&exe)
        .args(forwarded(&["--with-victim-sibling"]))
        .env_remove("STRESS_WITH_VICTIM_SIBLING")
        .status();
    let _ = sibling.kill();
    let _ = sibling.wait();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Of every 7 pages, `grow_fast` touches 5 and `grow_slow` 2, chosen page
/// by page at random (a fixed seed: the same split every run). At random,
/// not in turn: the kernel notices growth at batch boundaries (powers of
/// two), and a fixed pattern could line up with them and always show one
/// function; a random one shows each in proportion to its pages.
const FAST_IN_7: u64 = 5;

/// Touches page `p` of `block`. Never inlined: the page fault, and so the
/// stack a tracer takes, is in this function.
#[inline(never)]
fn grow_fast(block: &mut [u8], p: usize, page: usize) -> usize {
    touch(block, p, page, 1)
}

/// As [`grow_fast`], for the slower site. It writes another byte, so that
/// an optimised build cannot fold the two functions into one.
#[inline(never)]
fn grow_slow(block: &mut [u8], p: usize, page: usize) -> usize {
    touch(block, p, page, 2)
}

/// Writes `mark` into the first byte of page `p`; returns its bytes.
#[inline(always)]
fn touch(block: &mut [u8], p: usize, page: usize, mark: u8) -> usize {
    block[p * page] = mark;
    std::hint::black_box(&mut *block);
    page.min(block.len() - p * page)
}

/// xorshift64: the page-by-page choice of `two_sites`.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A step of `--two-sites`: `block`'s pages touched by the two functions
/// (no transparent huge pages, so each fault is one page). Returns the
/// bytes each touched.
fn two_sites(block: &mut [u8], page: usize, seed: &mut u64) -> (u64, u64) {
    // SAFETY: `block` is a live allocation; madvise only advises.
    unsafe {
        let addr = block.as_mut_ptr() as usize & !(page - 1);
        libc::madvise(
            addr as *mut libc::c_void,
            block.len(),
            libc::MADV_NOHUGEPAGE,
        );
    }
    let (mut fast, mut slow) = (0u64, 0u64);
    for p in 0..block.len().div_ceil(page) {
        if next(seed) % 7 < FAST_IN_7 {
            fast += grow_fast(block, p, page) as u64;
        } else {
            slow += grow_slow(block, p, page) as u64;
        }
    }
    (fast, slow)
}

/// Appends `bytes` zero bytes to `file` (a file in a tmpfs: shmem).
fn append(file: &mut std::fs::File, bytes: u64) -> std::io::Result<()> {
    use std::io::Write as _;
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.wait_for {
        while !path.exists() {
            thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(adj) = args.oom_score_adj
        && let Err(e) = std::fs::write("/proc/self/oom_score_adj", adj.to_string())
    {
        eprintln!("stress: setting oom_score_adj to {adj}: {e}");
        return ExitCode::FAILURE;
    }
    if args.with_victim_sibling {
        return run_with_victim_sibling();
    }
    if args.in_child {
        return run_in_child(&args);
    }
    let mut tmpfs = match &args.tmpfs_file {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("stress: opening {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let start = Instant::now();
    let page = page_size();
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut allocated: u64 = 0;
    let (mut fast, mut slow) = (0u64, 0u64);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut stdout = std::io::stdout().lock();
    for step in 1u64.. {
        let mut len = args.step;
        if let Some(max) = args.max {
            if allocated >= max {
                break;
            }
            len = len.min(max - allocated);
        }
        let Ok(len_usize) = usize::try_from(len) else {
            eprintln!("stress: step of {len} bytes does not fit in memory");
            return ExitCode::FAILURE;
        };
        if let Some(f) = tmpfs.as_mut() {
            if let Err(e) = append(f, len) {
                eprintln!("stress: writing the tmpfs file: {e}");
                return ExitCode::FAILURE;
            }
            allocated += len;
            let _ = writeln!(
                stdout,
                "{{\"event\":\"step\",\"step\":{step},\"tmpfs_bytes\":{allocated},\"elapsed_ms\":{}}}",
                start.elapsed().as_millis()
            );
            let _ = stdout.flush();
            thread::sleep(args.interval);
            continue;
        }
        // Zeroed allocations this large are fresh anonymous mappings: no
        // page is resident until written. Touch every page so each is
        // charged to the memcg now.
        let mut block = vec![0u8; len_usize];
        if args.two_sites {
            let (f, s) = two_sites(&mut block, page, &mut seed);
            fast += f;
            slow += s;
            blocks.push(block);
            allocated += len;
            let _ = writeln!(
                stdout,
                "{{\"event\":\"step\",\"step\":{step},\"allocated_bytes\":{allocated},\"fast_bytes\":{fast},\"slow_bytes\":{slow},\"elapsed_ms\":{}}}",
                start.elapsed().as_millis()
            );
            let _ = stdout.flush();
            thread::sleep(args.interval);
            continue;
        }
        for i in (0..len_usize).step_by(page) {
            block[i] = (step as u8) | 1;
        }
        blocks.push(block);
        allocated += len;
        let _ = writeln!(
            stdout,
            "{{\"event\":\"step\",\"step\":{step},\"allocated_bytes\":{allocated},\"elapsed_ms\":{}}}",
            start.elapsed().as_millis()
        );
        let _ = stdout.flush();
        thread::sleep(args.interval);
    }
    let _ = writeln!(
        stdout,
        "{{\"event\":\"holding\",\"allocated_bytes\":{allocated},\"hold_ms\":{}}}",
        args.hold.as_millis()
    );
    let _ = stdout.flush();
    thread::sleep(args.hold);
    // Keep the memory alive until here.
    std::hint::black_box(&blocks);
    ExitCode::SUCCESS
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("5Mi"), Ok(5 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("banana").is_err());
        assert!(parse_bytes("5Xi").is_err());
        assert!(parse_bytes("99999999999999999999Gi").is_err());
    }

    #[test]
    fn two_sites_touch_five_pages_in_seven_from_the_fast_one() {
        let page = 4096;
        let mut block = vec![0u8; 20_000 * page + 100];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let (fast, slow) = two_sites(&mut block, page, &mut seed);
        assert_eq!(fast + slow, block.len() as u64);
        let share = fast as f64 / (fast + slow) as f64 * 100.0;
        assert!((share - 500.0 / 7.0).abs() < 1.0, "{share}");
    }

    #[test]
    fn durations() {
        assert_eq!(humantime_like("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(humantime_like("2s"), Ok(Duration::from_secs(2)));
        assert!(humantime_like("2h").is_err());
    }
}
