//! The agent's resource use, from /proc: RSS and CPU time sampled every
//! second, where its resident memory is, and the statistics the report
//! shows.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// One second of the agent's life.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at_s: f64,
    pub(crate) rss_kib: f64,
    pub(crate) cpu_ms: f64,
}

/// The resident set (VmRSS), KiB.
fn rss_kib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Where the agent's resident memory is: anonymous and file-backed, and the
/// mappings over 256 KiB.
pub(crate) fn memory_map(pid: u32) -> Value {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut big = BTreeMap::<String, u64>::new();
    let mut name = String::new();
    for l in smaps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first().is_some_and(|a| {
            a.contains('-') && a.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        }) {
            name = f.get(5).map_or("[anon]".into(), |s| (*s).to_owned());
        } else if f.first() == Some(&"Rss:") {
            *big.entry(name.clone()).or_default() +=
                f.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    big.retain(|_, kib| *kib >= 256);
    json!({"rss_anon_kib": field("RssAnon:"), "rss_file_kib": field("RssFile:"), "mappings_kib": big})
}

/// User and system CPU time, ms.
fn cpu_ms(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux the agent supports.
    Some(ticks * 10.0)
}

/// Samples the agent every second until `stop`.
pub(crate) fn sampler(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut v = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let (Some(rss_kib), Some(cpu_ms)) = (rss_kib(pid), cpu_ms(pid)) {
                v.push(Sample {
                    at_s: t0.elapsed().as_secs_f64(),
                    rss_kib,
                    cpu_ms,
                });
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        v
    })
}

/// The `p`th percentile of `v`, interpolated (NaN when empty).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let r = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (r - lo as f64)
}

/// RSS (MiB) and CPU (% of one CPU, per second) over `[from, to)` seconds.
pub(crate) fn stats(samples: &[Sample], from: f64, to: f64) -> Value {
    let w: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_s >= from && s.at_s < to)
        .collect();
    let mut rss: Vec<f64> = w.iter().map(|s| s.rss_kib / 1024.0).collect();
    let mut cpu: Vec<f64> = w
        .windows(2)
        .map(|p| (p[1].cpu_ms - p[0].cpu_ms) / ((p[1].at_s - p[0].at_s) * 1000.0) * 100.0)
        .collect();
    let total_cpu = match (w.first(), w.last()) {
        (Some(a), Some(b)) if b.at_s > a.at_s => (b.cpu_ms - a.cpu_ms) / ((b.at_s - a.at_s) * 10.0),
        _ => f64::NAN,
    };
    json!({
        "samples": w.len(),
        "rss_mib": {"median": percentile(&mut rss, 50.0), "peak": percentile(&mut rss, 100.0)},
        "cpu_pct": {"median": percentile(&mut cpu, 50.0), "p95": percentile(&mut cpu, 95.0),
                    "peak": percentile(&mut cpu, 100.0), "mean": total_cpu},
    })
}
