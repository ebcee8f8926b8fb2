//! `cargo xtask bench`: startup, idle RSS and per-hook kernel cost, as
//! medians over repeated runs, printed as a table and written as JSON to
//! target/bench/bench.json. Needs root (it runs the real tracer).
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn rss_kib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A running tracer: its process and the records it printed so far.
struct Running {
    child: Child,
    records: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Running {
    /// Waits for the tracer to end (SIGTERM first if `stop`) and returns its stop record.
    fn finish(mut self, stop: bool) -> anyhow::Result<serde_json::Value> {
        if stop {
            // SAFETY: plain syscall on our child.
            unsafe { libc_kill(self.child.id() as i32, 15) };
        }
        self.child.wait()?;
        let _ = self.reader.join();
        let recs = self
            .records
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        recs.last()
            .filter(|r| r["event"] == "stop")
            .cloned()
            .context("the tracer printed no stop record")
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Per-program (runs, ns/run) from a stop record's hook_stats.
fn hook_cost(stop: &serde_json::Value) -> BTreeMap<String, (f64, u64)> {
    stop["hook_stats"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| {
            let n = h["run_count"].as_u64()?;
            let t = h["run_time_ns"].as_u64()?;
            Some((
                h["program"].as_str()?.to_owned(),
                (t as f64 / n.max(1) as f64, n),
            ))
        })
        .collect()
}

/// Starts `oom-tracer run` on `workload`, returns the child and its start record.
fn start_tracer(
    tracer: &Path,
    extra: &[&str],
    workload: &[&str],
) -> anyhow::Result<(Running, serde_json::Value)> {
    let mut child = Command::new(tracer)
        .args([
            "run",
            "--cgroup-parent",
            "/oom-tracer-bench",
            "--restart-policy",
            "Never",
        ])
        .args(extra)
        .arg("--")
        .args(workload)
        .env("OOM_TRACER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting oom-tracer")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().context("no start record")??;
    let start: serde_json::Value = serde_json::from_str(&first)?;
    if start["event"] != "start" {
        bail!("first record is not start: {first}");
    }
    // Keep reading stdout so the tracer never blocks on a full pipe.
    let records = std::sync::Arc::new(std::sync::Mutex::new(vec![start.clone()]));
    let sink = records.clone();
    let reader = std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if let (Ok(v), Ok(mut r)) = (serde_json::from_str(&l), sink.lock()) {
                r.push(v);
            }
        }
    });
    Ok((
        Running {
            child,
            records,
            reader,
        },
        start,
    ))
}

fn exec_storm(n: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    for _ in 0..n {
        Command::new("/bin/true").status()?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

pub fn bench(root: &Path, runs: usize) -> anyhow::Result<()> {
    let tracer = root.join("target/release/oom-tracer");
    let stress = root.join("target/release/stress");
    let stress_s = stress.to_string_lossy().into_owned();
    let mut results = serde_json::Map::new();

    // Startup (load + attach) and idle RSS.
    let (mut startup, mut rss) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (run, start) =
            start_tracer(&tracer, &[], &[&stress_s, "--max", "4Mi", "--hold", "3s"])?;
        startup.push(start["startup_ms"].as_f64().unwrap_or(f64::NAN));
        std::thread::sleep(Duration::from_millis(1500));
        rss.push(rss_kib(run.child.id()).unwrap_or(f64::NAN) / 1024.0);
        run.finish(false)?;
    }
    let startup_ms = median(&mut startup);
    let idle_rss_mib = median(&mut rss);
    results.insert("startup_ms".into(), startup_ms.into());
    results.insert("idle_rss_mib".into(), idle_rss_mib.into());

    // Per-hook cost under storms, with kernel.bpf_stats_enabled held on.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling bpf_stats")?;
    let mut storms = serde_json::Map::new();
    let mut table: Vec<(String, String, f64, u64)> = Vec::new();
    // 1. exec storm outside the watched cgroups: the filtered-out cost every node pays.
    let (run, _) = start_tracer(&tracer, &[], &[&stress_s, "--max", "4Mi", "--hold", "60s"])?;
    std::thread::sleep(Duration::from_millis(500));
    let rate = exec_storm(3000)?;
    let outside = hook_cost(&run.finish(true)?);
    storms.insert("exec_storm_unwatched_per_s".into(), rate.into());
    for (k, (ns, n)) in &outside {
        table.push(("fork/exec storm, unwatched".into(), k.clone(), *ns, *n));
    }
    // 2. exec storm inside the watched container.
    let t = Instant::now();
    let (run, _) = start_tracer(
        &tracer,
        &["--memory-limit", "none"],
        &[
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done",
        ],
    )?;
    let inside = hook_cost(&run.finish(false)?);
    storms.insert(
        "exec_storm_watched_s".into(),
        t.elapsed().as_secs_f64().into(),
    );
    for (k, (ns, n)) in &inside {
        table.push(("fork/exec storm, watched".into(), k.clone(), *ns, *n));
    }
    // 3. allocation storm: stress ramps to 400Mi as fast as it can.
    let (run, _) = start_tracer(
        &tracer,
        &["--memory-limit", "1Gi"],
        &[
            &stress_s,
            "--step",
            "4Mi",
            "--interval",
            "0ms",
            "--max",
            "400Mi",
        ],
    )?;
    let alloc = hook_cost(&run.finish(false)?);
    for (k, (ns, n)) in &alloc {
        table.push(("allocation storm, watched".into(), k.clone(), *ns, *n));
    }
    let mut rows = Vec::new();
    for (storm, hook, ns, n) in &table {
        rows.push(serde_json::json!({"storm": storm, "hook": hook, "ns_per_run": if ns.is_nan() { serde_json::Value::Null } else { (*ns).into() }, "runs": n}));
    }
    results.insert("storms".into(), storms.into());
    results.insert("hook_cost".into(), rows.into());

    println!("| measure | median |");
    println!("|---|---|");
    println!("| startup (BTF + load + attach) | {startup_ms:.0} ms |");
    println!("| idle RSS | {idle_rss_mib:.1} MiB |");
    println!("| /bin/true exec rate, unwatched storm | {rate:.0}/s |");
    println!();
    println!("| storm | hook | ns/run | runs |");
    println!("|---|---|---|---|");
    for (storm, hook, ns, n) in &table {
        println!(
            "| {storm} | {hook} | {} | {n} |",
            if ns.is_nan() {
                "-".into()
            } else {
                format!("{ns:.0}")
            }
        );
    }
    let out: PathBuf = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    eprintln!("xtask: wrote {}", out.join("bench.json").display());
    Ok(())
}
