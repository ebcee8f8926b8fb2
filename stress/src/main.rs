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
}

/// Runs the allocation in a child copy of this program and outlives it.
fn run_in_child(args: &Args) -> ExitCode {
    let exe = std::env::current_exe().unwrap_or_else(|_| "stress".into());
    let forwarded: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--in-child")
        .collect();
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

fn main() -> ExitCode {
    let args = Args::parse();
    if args.in_child {
        return run_in_child(&args);
    }
    let start = Instant::now();
    let page = page_size();
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut allocated: u64 = 0;
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
        // Zeroed allocations this large are fresh anonymous mappings: no
        // page is resident until written. Touch every page so each is
        // charged to the memcg now.
        let mut block = vec![0u8; len_usize];
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
    fn durations() {
        assert_eq!(humantime_like("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(humantime_like("2s"), Ok(Duration::from_secs(2)));
        assert!(humantime_like("2h").is_err());
    }
}
