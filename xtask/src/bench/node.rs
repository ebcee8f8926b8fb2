//! The node-sized bench: pods on the test containerd (110 from 8 CPUs on,
//! fewer in proportion below: 27 on 2 vCPUs; a tenth of them crash-looping
//! on OOM kills, a churn of short-lived pods), 5,000 pods served by the API
//! stand-in, the agent with the CRI, the API and metrics on. The work is
//! done by the ignored integration test `oom-tracer/tests/node_bench.rs`
//! (it drives the CRI with the tests' kubelet stand-in, retries what the
//! runtime fails as the kubelet would, and removes its pods and their
//! cgroups however it ends); this runs it with the release agent and
//! renders the JSON it writes.
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// Starts (or repairs) the test containerd, runs the node bench for `secs`
/// and returns what it wrote.
pub(crate) fn run(root: &Path, secs: u64) -> anyhow::Result<Value> {
    // The children's output goes to stderr: stdout is the bench's table.
    crate::start_test_containerd()?;
    let out = root.join("target/bench/node.json");
    let _ = std::fs::remove_file(&out);
    eprintln!("xtask: bench: node bench ({secs} s under load, a few minutes in all)");
    // crate::cargo() hands the build the vendored protoc.
    let st = crate::cargo()
        .args(["test", "-p", "oom-tracer", "--test", "node_bench"])
        .args(["--", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("OOM_TRACER_NODE_BENCH_SECS", secs.to_string())
        .env(
            "OOM_TRACER_NODE_BENCH_AGENT",
            root.join("target/release/oom-tracer"),
        )
        .env("OOM_TRACER_NODE_BENCH_OUT", &out)
        .stdout(std::io::stderr())
        .status()
        .context("running the node bench (cargo test --test node_bench)")?;
    let report: Option<Value> = std::fs::read_to_string(&out)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    match (st.success(), report) {
        (true, Some(r)) => Ok(r),
        (false, Some(r)) => {
            eprintln!(
                "xtask: bench: the node bench failed its checks (lost records or misattribution); its figures follow"
            );
            Ok(r)
        }
        (_, None) => bail!("the node bench wrote no {} ({st})", out.display()),
    }
}

fn num(v: &Value, dec: usize) -> String {
    v.as_f64()
        .filter(|x| x.is_finite())
        .map_or("-".into(), |x| format!("{x:.dec$}"))
}

/// The node bench as a markdown table.
pub(crate) fn render(r: &Value) -> String {
    let a = &r["agent"];
    let c = &r["config"];
    let mib = |p: &str, k: &str| num(&a[p]["rss_mib"][k], 1);
    let cpu = |p: &str, k: &str| num(&a[p]["cpu_pct"][k], 1);
    let frac = |o: &Value| {
        format!(
            "{} / {} (wrong {}, missing {})",
            num(&o["right"], 0),
            num(&o["expected"], 0),
            num(&o["wrong"], 0),
            num(&o["missing"], 0)
        )
    };
    let mut md = String::new();
    md.push_str(&format!(
        "\nNode bench: {} pods on the test containerd ({} crash-looping on OOM kills), a churn of \
         short-lived pods, {} pods served by the API stand-in; the agent with the CRI, the API and \
         metrics on, {} s under load (1 s samples).\n\n",
        num(&c["node_pods"], 0),
        num(&c["crash_looping"], 0),
        num(&c["cluster_pods"], 0),
        num(&c["load_secs"], 0)
    ));
    md.push_str("| measure | value |\n|---|---|\n");
    let mut row = |k: &str, v: String| md.push_str(&format!("| {k} | {v} |\n"));
    row(
        "agent RSS, one pod on the node: median",
        format!("{} MiB", mib("one_pod", "median")),
    );
    row(
        &format!(
            "agent RSS, {} pods under load: median / peak",
            num(&c["node_pods"], 0)
        ),
        format!("{} / {} MiB", mib("load", "median"), mib("load", "peak")),
    );
    row(
        "agent CPU, filling the node: median / peak, % of one CPU",
        format!("{} / {} %", cpu("fill", "median"), cpu("fill", "peak")),
    );
    row(
        "agent CPU, under load: median / p95 / peak (mean), % of one CPU",
        format!(
            "{} / {} / {} ({}) %",
            cpu("load", "median"),
            cpu("load", "p95"),
            cpu("load", "peak"),
            cpu("load", "mean")
        ),
    );
    row(
        "records per second (whole run)",
        num(&r["records"]["per_s"], 0),
    );
    row("records lost", num(&r["records"]["lost"], 0));
    row(
        "runtime failures (containerd's, retried as the kubelet would; not the agent's)",
        num(&r["runtime_failures"]["count"], 0),
    );
    row(
        "OOM kills of the crash loops attributed right",
        frac(&r["kills"]),
    );
    row(
        "restarts attributed right (pod, container, restart count)",
        frac(&r["restarts"]),
    );
    row(
        "churn: pods started and stopped (per s); their starts / exits seen; misattributed",
        format!(
            "{} ({}/s); {} / {}; {}",
            num(&r["churn"]["pods"], 0),
            num(&r["churn"]["starts_per_s"], 1),
            num(&r["churn"]["starts_seen"], 0),
            num(&r["churn"]["exits_seen"], 0),
            num(&r["churn"]["wrong"], 0)
        ),
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_the_test_writes() {
        let r = serde_json::json!({
            "config": {"node_pods": 110, "crash_looping": 10, "cluster_pods": 5000, "load_secs": 120},
            "agent": {"one_pod": {"rss_mib": {"median": 12.04}},
                      "load": {"rss_mib": {"median": 20.0, "peak": 21.5},
                               "cpu_pct": {"median": 2.0, "p95": 4.0, "peak": 5.0, "mean": 2.2}},
                      "fill": {"cpu_pct": {"median": 3.0, "peak": 4.0}}},
            "records": {"per_s": 80.4, "lost": 0},
            "kills": {"right": 50, "expected": 50, "wrong": 0, "missing": 0},
            "restarts": {"right": 40, "expected": 40, "wrong": 0, "missing": 0},
            "churn": {"pods": 400, "starts_per_s": 3.3, "starts_seen": 400, "exits_seen": 400, "wrong": 0},
        });
        let md = render(&r);
        assert!(
            md.contains("| agent RSS, one pod on the node: median | 12.0 MiB |"),
            "{md}"
        );
        assert!(md.contains(
            "| OOM kills of the crash loops attributed right | 50 / 50 (wrong 0, missing 0) |"
        ));
        assert!(md.contains("| records lost | 0 |"));
        assert!(md.contains("(3.3/s)"));
    }
}
