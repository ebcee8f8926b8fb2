//! Writing records to stdout: NDJSON (the default, for tools) or a
//! readable timeline (`--format pretty`, for people).
use std::io::Write as _;

use crate::{
    quantity::format_bytes,
    record::{Body, Record},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (schema in docs/schema.md).
    Json,
    /// A timeline for people.
    Pretty,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing to stdout")]
    Write(#[source] std::io::Error),
    #[error("serialising a {event} record")]
    Serialise {
        event: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub struct Output {
    format: Format,
    pub records: u64,
    /// Cycle analysis fed by every record (emits `cycle` records).
    cycles: Option<crate::cycle::Cycles>,
    /// Prometheus counters fed by every record.
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    color: bool,
}

impl Output {
    pub fn new(format: Format) -> Self {
        use std::io::IsTerminal as _;
        Self {
            format,
            records: 0,
            cycles: None,
            metrics: None,
            color: format == Format::Pretty
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub fn with_cycles(mut self, policy: crate::backoff::BackoffPolicy) -> Self {
        self.cycles = Some(crate::cycle::Cycles::new(policy));
        self
    }

    pub fn set_metrics(&mut self, m: std::sync::Arc<crate::metrics::Metrics>) {
        self.metrics = Some(m);
    }

    /// Writes a record, then what the analyses derive from it.
    pub fn emit(&mut self, r: &Record) -> Result<(), OutputError> {
        self.write(r)?;
        if let Some(m) = &self.metrics {
            observe_metrics(m, r);
        }
        let derived = self
            .cycles
            .as_mut()
            .map(|c| c.observe(r))
            .unwrap_or_default();
        for body in derived {
            self.write(&Record::new(r.time.clone(), body))?;
        }
        Ok(())
    }

    /// Emits the analyses' last records (at shutdown, before `stop`).
    pub fn finish(&mut self, time: &str) -> Result<(), OutputError> {
        let derived = self.cycles.as_mut().map(|c| c.finish()).unwrap_or_default();
        for body in derived {
            self.write(&Record::new(time.to_owned(), body))?;
        }
        Ok(())
    }

    fn write(&mut self, r: &Record) -> Result<(), OutputError> {
        let line = match self.format {
            Format::Json => serde_json::to_string(r).map_err(|source| OutputError::Serialise {
                event: r.event(),
                source,
            })?,
            Format::Pretty => {
                let line = pretty(r);
                if self.color { colorize(r, &line) } else { line }
            }
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(OutputError::Write)?;
        self.records += 1;
        Ok(())
    }
}

/// Shortens 64-hex container ids in a line to 12 characters, as
/// `docker ps` and `crictl ps` do.
fn short_ids(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == 64 {
            out.push_str(&run[..12]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in line.chars() {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

fn bytes(b: u64) -> String {
    format_bytes(b)
}

/// Counts a record in the Prometheus metrics.
fn observe_metrics(m: &crate::metrics::Metrics, r: &Record) {
    use crate::record::{ContainerRef, PodRef};
    fn names<'a>(
        p: Option<&'a PodRef>,
        c: Option<&'a ContainerRef>,
    ) -> (&'a str, &'a str, &'a str) {
        (
            p.and_then(|p| p.namespace.as_deref()).unwrap_or(""),
            p.and_then(|p| p.name.as_deref()).unwrap_or(""),
            c.and_then(|c| c.name.as_deref()).unwrap_or(""),
        )
    }
    m.records(r.event());
    match &r.body {
        Body::OomKill {
            kind,
            pod,
            container,
            ..
        } => {
            let (ns, p, c) = names(pod.as_ref(), container.as_ref());
            m.oom_kill(
                ns,
                p,
                c,
                if kind == "memcg" {
                    "memcg_oom"
                } else {
                    "global_oom"
                },
            );
        }
        Body::ContainerExit {
            pod,
            container,
            verdict: Some(v),
            ..
        } => {
            let (ns, p, c) = names(Some(pod), Some(container));
            m.sigkill(ns, p, c, v.as_str());
        }
        Body::Restart { pod, container, .. } => {
            let (ns, p, c) = names(Some(pod), Some(container));
            m.restart(ns, p, c);
        }
        Body::Lost { ringbuf_full, .. } => m.lost_events(*ringbuf_full),
        Body::Start { hooks, .. } => {
            for h in &hooks.active {
                m.hook(h, true);
            }
            for h in &hooks.missing {
                m.hook(&h.hook, false);
            }
        }
        _ => {}
    }
}

/// ANSI colour by event, for a terminal.
fn colorize(r: &Record, line: &str) -> String {
    let code = match &r.body {
        Body::OomKill { .. } => "1;31",
        Body::Exit {
            signal: Some(_), ..
        }
        | Body::ContainerExit { .. } => "31",
        Body::Backoff { .. } | Body::Lost { .. } => "33",
        Body::Restart { .. } | Body::ContainerStart { .. } => "32",
        Body::Cycle { .. } => "1;36",
        Body::Alloc { .. } => "2",
        _ => return line.to_owned(),
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// One readable line per record.
pub fn pretty(r: &Record) -> String {
    // "2026-11-27T18:39:42.123456Z" → "18:39:42.123"
    let clock = r.time.get(11..23).unwrap_or(&r.time);
    let what = match &r.body {
        Body::Start {
            mode,
            kernel,
            cgroup_version,
            hooks,
            ..
        } => format!(
            "oom-tracer {mode} on Linux {kernel}, cgroup {}; {} hooks active, {} missing",
            cgroup_version.as_deref().unwrap_or("?"),
            hooks.active.len(),
            hooks.missing.len()
        ),
        Body::ContainerStart {
            container,
            cgroup,
            pid,
            memory_limit_bytes,
            pod_memory_limit_bytes,
            ..
        } => format!(
            "container {} started: pid {pid} in {cgroup} (limit {}, pod limit {})",
            container.name.as_deref().unwrap_or("?"),
            memory_limit_bytes.map_or("none".into(), bytes),
            pod_memory_limit_bytes.map_or("none".into(), bytes),
        ),
        Body::Exec { proc, cgroup, .. } => format!(
            "{}[{}] exec in {}",
            proc.comm,
            proc.pid,
            cgroup.as_deref().unwrap_or("?")
        ),
        Body::Alloc {
            proc,
            anon_rss_bytes,
            limit_bytes,
            ..
        } => match limit_bytes {
            Some(l) if *l > 0 => format!(
                "{}[{}] anon memory {} of {} ({}%)",
                proc.comm,
                proc.pid,
                bytes(*anon_rss_bytes),
                bytes(*l),
                anon_rss_bytes.saturating_mul(100) / l
            ),
            _ => format!(
                "{}[{}] anon memory {}",
                proc.comm,
                proc.pid,
                bytes(*anon_rss_bytes)
            ),
        },
        Body::Signal {
            signal,
            from_kernel,
            target,
            sender,
            ..
        } => format!(
            "signal {signal} to {}[{}] from {} {}[{}]",
            target.comm,
            target.pid,
            if *from_kernel {
                "the kernel, in"
            } else {
                "user"
            },
            sender.comm,
            sender.pid
        ),
        Body::OomKill {
            kind,
            victim,
            trigger,
            memcg,
            ..
        } => {
            let limit = match memcg {
                Some(m) => format!(
                    "{} hit its {}limit: usage {} / limit {}, failcnt {}",
                    m.path.as_deref().unwrap_or("?"),
                    m.level
                        .map(|l| format!(
                            "{} ",
                            serde_json::to_value(l)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default()
                        ))
                        .unwrap_or_default(),
                    bytes(m.usage_bytes),
                    bytes(m.limit_bytes),
                    m.failcnt.map_or("n/a".into(), |f| f.to_string())
                ),
                None => format!("{kind} OOM"),
            };
            format!(
                "OOM KILL {}[{}] (anon {}) — {limit}; triggered by {}[{}]",
                victim.comm,
                victim.pid,
                victim.anon_rss_bytes.map_or("?".into(), bytes),
                trigger.comm,
                trigger.pid
            )
        }
        Body::Exit {
            proc,
            signal,
            exit_code,
            verdict,
            killed_by,
            ..
        } => match (signal, exit_code) {
            (Some(9), _) => format!(
                "{}[{}] killed by SIGKILL ({}{})",
                proc.comm,
                proc.pid,
                verdict.map_or("?", |v| v.as_str()),
                killed_by
                    .as_ref()
                    .map(|k| format!(", sent by {}[{}]", k.comm, k.pid))
                    .unwrap_or_default()
            ),
            (Some(s), _) => format!("{}[{}] killed by signal {s}", proc.comm, proc.pid),
            (None, Some(c)) => format!("{}[{}] exited with {c}", proc.comm, proc.pid),
            (None, None) => format!("{}[{}] exited", proc.comm, proc.pid),
        },
        Body::ContainerExit {
            container,
            exit_code,
            reason,
            ran_ms,
            ..
        } => format!(
            "container {} terminated: exit code {exit_code}, reason {reason}, ran {:.1}s",
            container.name.as_deref().unwrap_or("?"),
            *ran_ms as f64 / 1000.0
        ),
        Body::Backoff {
            container,
            state,
            backoff_ms,
            ..
        } => format!(
            "{state}: back-off {:.1}s restarting failed container {}",
            *backoff_ms as f64 / 1000.0,
            container.name.as_deref().unwrap_or("?")
        ),
        Body::Restart {
            container,
            restart_count,
            backoff_ms,
            ..
        } => format!(
            "container {} restarted (restart #{restart_count}, after {:.1}s back-off)",
            container.name.as_deref().unwrap_or("?"),
            *backoff_ms as f64 / 1000.0
        ),
        Body::Cycle {
            container,
            state,
            last_state_reason,
            ramp,
            limit,
            incident,
            restart,
            ..
        } => {
            let mut parts = vec![format!(
                "container {}: {}",
                container
                    .as_ref()
                    .and_then(|c| c.name.as_deref())
                    .unwrap_or("?"),
                last_state_reason.as_deref().unwrap_or("running")
            )];
            if let Some(r) = ramp {
                parts.push(format!(
                    "ramp {} MiB/s, limit reached after {}",
                    r.growth_mib_per_s.map_or("?".into(), |g| format!("{g:.1}")),
                    r.time_to_limit_ms
                        .map_or("-".into(), |t| format!("{:.1}s", t as f64 / 1000.0))
                ));
            }
            if let Some(l) = limit {
                parts.push(format!(
                    "{} limit {}",
                    l.level
                        .and_then(|lv| serde_json::to_value(lv).ok())
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    bytes(l.limit_bytes)
                ));
            }
            if let Some(i) = incident {
                parts.push(format!(
                    "{} victim(s), trigger {}[{}]",
                    i.victims.len(),
                    i.trigger.comm,
                    i.trigger.pid
                ));
            }
            if let Some(r) = restart {
                parts.push(format!(
                    "back-off {:.1}s (kubelet schedule {:.1}s), next {:.1}s",
                    r.observed_backoff_ms as f64 / 1000.0,
                    r.expected_backoff_ms as f64 / 1000.0,
                    r.next_expected_backoff_ms as f64 / 1000.0
                ));
            }
            parts.push(format!("now {state}"));
            parts.join("; ")
        }
        Body::CgroupMkdir { path, .. } => format!("cgroup created {path}"),
        Body::CgroupRmdir { path, .. } => format!("cgroup removed {path}"),
        Body::Lost {
            ringbuf_full,
            read_errors,
        } => format!("LOST {ringbuf_full} records (ring buffer full), {read_errors} read errors"),
        Body::Stop {
            reason,
            restarts,
            oom_kills,
            lost_events,
            ..
        } => format!(
            "stopped ({reason}): {oom_kills} OOM kills, {restarts} restarts, {lost_events} lost records"
        ),
    };
    short_ids(&format!("{clock}  {:<15} {what}", r.event()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Proc;

    #[test]
    fn pretty_lines() {
        let r = Record::new(
            "2026-11-27T18:39:42.123456Z".into(),
            Body::Exit {
                proc: Proc {
                    pid: 7,
                    tgid: 7,
                    comm: "stress".into(),
                },
                signal: Some(9),
                exit_code: None,
                core_dumped: false,
                verdict: None,
                killed_by: None,
                cgroup: None,
                pod: None,
                container: None,
            },
        );
        assert_eq!(
            pretty(&r),
            "18:39:42.123  exit            stress[7] killed by SIGKILL (?)"
        );
        let id = "a".repeat(64);
        assert_eq!(short_ids(&format!("/pod/{id}/x")), "/pod/aaaaaaaaaaaa/x");
        assert_eq!(short_ids("beef 12"), "beef 12");
    }
}
