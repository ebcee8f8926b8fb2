//! Where the time from an OOM kill to its line on stdout goes, measured
//! from outside `oom-tracer run` (bench/latency.bt): the kernel's wake-up
//! and the scheduler (kill → the tracer returns from epoll_wait), the
//! tracer's own work (→ the write(2) that carries the `oom_kill` line:
//! drain, decode, translate, JSON, and the lines before it), and the pipe
//! (→ the bench reads the line). The script is xtask/src/latency.bt.
use std::{collections::BTreeSet, process::Command, time::Duration};

use serde_json::{Value, json};

use super::{Ctx, is_event, percentile, tool::Proc};

/// The breakdown's own script.
const SCRIPT: &str = include_str!("../latency.bt");
/// Kills of the breakdown run (the first ones, before the script is
/// attached, are not counted).
const KILLS: usize = 30;

const MARK_VICTIM: u64 = 1;
const EPOLL_EXIT: u64 = 4;
const WRITE: u64 = 5;

/// One kill, in µs after `mark_victim`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Kill {
    pub(crate) woken_us: f64,
    pub(crate) written_us: f64,
    pub(crate) read_us: f64,
    pub(crate) writes: usize,
}

/// Parses the script's map dump: `@t[7]: (1, 123456, 42)`.
pub(crate) fn parse_events(text: &str) -> Vec<(u64, u64, u64)> {
    let mut v: Vec<(u64, u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.strip_prefix("@t[")?.split_once("]: (")?;
            let mut f = rest
                .trim_end_matches(')')
                .split(',')
                .map(|x| x.trim().parse());
            let kind: u64 = f.next()?.ok()?;
            let ns: u64 = f.next()?.ok()?;
            let arg: u64 = f.next()?.ok()?;
            Some((ns, kind, arg))
        })
        .collect();
    v.sort_unstable();
    v
}

/// Per kill of one of `victims`: the first return from epoll_wait after it,
/// the last write(1) before the bench read the line (at `reads`, in the
/// kills' order), and how many writes the tracer made in between.
pub(crate) fn kills(events: &[(u64, u64, u64)], victims: &[(u64, u64)]) -> Vec<Kill> {
    let mut out = Vec::new();
    for &(pid, read_ns) in victims {
        let Some(&(t0, ..)) = events
            .iter()
            .find(|&&(t, k, a)| k == MARK_VICTIM && a == pid && t < read_ns)
        else {
            continue;
        };
        let window = || events.iter().filter(|&&(t, ..)| t > t0 && t <= read_ns);
        let Some(&(woken, ..)) = window().find(|&&(_, k, _)| k == EPOLL_EXIT) else {
            continue;
        };
        let writes: Vec<u64> = window()
            .filter(|&&(t, k, _)| k == WRITE && t >= woken)
            .map(|&(t, ..)| t)
            .collect();
        let Some(&written) = writes.last() else {
            continue;
        };
        let us = |t: u64| t.saturating_sub(t0) as f64 / 1e3;
        out.push(Kill {
            woken_us: us(woken),
            written_us: us(written),
            read_us: us(read_ns),
            writes: writes.len(),
        });
    }
    out
}

impl Ctx {
    /// One run of `KILLS` kills under `oom-tracer run` with latency.bt on it.
    pub(super) fn latency_breakdown(&mut self) -> anyhow::Result<Value> {
        eprintln!("xtask: bench: OOM latency breakdown: {KILLS} kills, traced from outside");
        let script = self.out.join("latency.bt");
        std::fs::write(&script, SCRIPT)?;
        let parent = super::sys::cgroup_path(&self.own);
        let mut c = Command::new(&self.tracer);
        c.args(["run", "--cgroup-parent", &parent])
            .args(["--memory-limit", "20Mi", "--restart-policy", "Always"])
            .args(["--max-restarts", &(KILLS - 1).to_string()])
            .args(["--backoff-initial", "200ms", "--backoff-max", "200ms", "--"])
            .arg(&self.stress)
            .args(["--step", "5Mi", "--interval", "1ms"])
            .env("OOM_TRACER_LOG", "warn");
        let mut run = Proc::spawn("oom-tracer run", c, &self.out.join("oom-tracer-run.stderr"))?;
        let mut bt = Command::new("bpftrace");
        bt.arg(&script).arg(run.pid().to_string());
        let mut bt = Proc::spawn(
            "bpftrace (latency.bt)",
            bt,
            &self.out.join("bpftrace.stderr"),
        )?;
        let (_, ready) = bt.wait_for(0, Duration::from_secs(60), |l| l.text == "ready")?;
        run.wait_for(0, Duration::from_secs(120), |l| is_event(&l.text, "stop"))?;
        let lines = run.finish(None, Duration::from_secs(10))?;
        let dump = bt.finish(Some(libc::SIGINT), Duration::from_secs(15))?;
        let text: String = dump.iter().map(|l| format!("{}\n", l.text)).collect();
        let events = parse_events(&text);
        let victims: Vec<(u64, u64)> = lines
            .iter()
            .filter(|l| is_event(&l.text, "oom_kill") && l.mono_ns > ready.mono_ns)
            .filter_map(|l| {
                let v: Value = serde_json::from_str(&l.text).ok()?;
                Some((v["victim"]["pid"].as_u64()?, l.mono_ns))
            })
            .collect();
        let pids: BTreeSet<u64> = victims.iter().map(|v| v.0).collect();
        let ks = kills(&events, &victims);
        let col = |f: fn(&Kill) -> f64| -> Vec<f64> { ks.iter().map(f).collect() };
        let stat = |mut v: Vec<f64>| json!({"p50": percentile(&mut v, 50.0), "p90": percentile(&mut v, 90.0)});
        let stages = json!({
            "kill_to_woken_us": stat(col(|k| k.woken_us)),
            "woken_to_written_us": stat(col(|k| k.written_us - k.woken_us)),
            "written_to_read_us": stat(col(|k| k.read_us - k.written_us)),
            "kill_to_read_us": stat(col(|k| k.read_us)),
            "writes_up_to_the_line": stat(ks.iter().map(|k| k.writes as f64).collect()),
        });
        Ok(json!({
            "kills_traced": ks.len(),
            "kills": pids.len(),
            "stages": stages,
            "per_kill": ks.iter().map(|k| json!([k.woken_us, k.written_us, k.read_us, k.writes])).collect::<Vec<_>>(),
        }))
    }
}

/// The breakdown as a markdown table.
pub(crate) fn render(b: &Value) -> String {
    let s = &b["stages"];
    let f = |k: &str, dec: usize| {
        let v = |p: &str| {
            s[k][p]
                .as_f64()
                .filter(|x| x.is_finite())
                .map_or("-".into(), |x| format!("{x:.dec$}"))
        };
        format!("{} / {}", v("p50"), v("p90"))
    };
    let mut md = format!(
        "\nOOM kill → line on stdout, broken down from outside (`oom-tracer run`, {} kills traced by \
         xtask/src/latency.bt; µs after `mark_victim`, p50 / p90):\n\n| stage | µs |\n|---|---|\n",
        b["kills_traced"]
    );
    md.push_str(&format!(
        "| kill → the tracer returns from epoll_wait (kernel wake-up, scheduler) | {} |\n",
        f("kill_to_woken_us", 0)
    ));
    md.push_str(&format!(
        "| → the write(2) that carries the `oom_kill` line (drain, decode, translate, JSON, the lines before it) | {} |\n",
        f("woken_to_written_us", 0)
    ));
    md.push_str(&format!(
        "| → the bench reads the line (pipe, reader wake-up) | {} |\n",
        f("written_to_read_us", 0)
    ));
    md.push_str(&format!(
        "| kill → read, in all | {} |\n",
        f("kill_to_read_us", 0)
    ));
    md.push_str(&format!(
        "| write(2) calls from the wake-up to the line | {} |\n",
        f("writes_up_to_the_line", 0)
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_is_split_into_stages() {
        let dump = "@t[0]: (1, 1000000, 42)\n@t[1]: (2, 1010000, 0)\n@t[2]: (4, 1020000, 1)\n\
                    @t[3]: (5, 1100000, 300)\n@t[4]: (5, 1150000, 500)\n@t[5]: (4, 9000000, 1)\n\
                    @t[6]: (1, 9000000, 99)\nnoise\n";
        let ev = parse_events(dump);
        assert_eq!(ev.len(), 7);
        let ks = kills(&ev, &[(42, 1_200_000), (7, 5_000_000)]);
        assert_eq!(
            ks,
            [Kill {
                woken_us: 20.0,
                written_us: 150.0,
                read_us: 200.0,
                writes: 2
            }]
        );
    }
}
