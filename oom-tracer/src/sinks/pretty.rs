//! The timeline for people: one line per record, `HH:MM:SS.mmm  event  what`.
//! Container ids are cut to 12 characters, as `crictl ps` shows them.
use crate::{
    quantity::format_bytes as bytes,
    schema::{
        Alloc, AllocKind, Body, Callsites, ContainerExit, Cycle, Exec, Exit, OomKill, Record,
        Signal, Start, Stop,
    },
};

/// One readable line for `r`.
pub(super) fn line(r: &Record) -> String {
    let time = r.time.to_string();
    // "2026-11-27T18:39:42.123456Z" → "18:39:42.123"
    let clock = time.get(11..23).unwrap_or(&time);
    short_ids(&format!("{clock}  {:<15} {}", r.event(), what(&r.body)))
}

/// [`line`] in an ANSI colour by event, for a terminal.
pub(super) fn coloured(r: &Record) -> String {
    let text = line(r);
    let code = match &r.body {
        Body::OomKill(_) => "1;31",
        Body::Exit(Exit {
            signal: Some(_), ..
        })
        | Body::ContainerExit(_) => "31",
        Body::Backoff(_) | Body::Lost(_) | Body::Pressure(_) => "33",
        Body::NearMiss(_) => "1;33",
        Body::Restart(_) | Body::ContainerStart(_) => "32",
        Body::Cycle(_) => "1;36",
        Body::Alloc(_) => "2",
        _ => return text,
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn name(n: Option<&str>) -> &str {
    n.unwrap_or("?")
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn what(b: &Body) -> String {
    match b {
        Body::Start(s) => start(s),
        Body::ContainerStart(s) => format!(
            "container {} started: pid {} in {} (limit {}, pod limit {})",
            name(s.container.name.as_deref()),
            s.pid,
            s.cgroup,
            s.memory_limit_bytes.map_or("none".into(), bytes),
            s.pod_memory_limit_bytes.map_or("none".into(), bytes),
        ),
        Body::Exec(e) => exec(e),
        Body::Alloc(a) => alloc(a),
        Body::Signal(s) => signal(s),
        Body::OomKill(o) => oom_kill(o),
        Body::Exit(e) => exit(e),
        Body::ContainerExit(e) => container_exit(e),
        Body::Backoff(b) => format!(
            "{}: back-off {} restarting failed container {}",
            b.state.as_str(),
            secs(b.backoff_ms),
            name(b.container.name.as_deref())
        ),
        Body::Restart(r) => format!(
            "container {} restarted (restart #{}, after {} back-off)",
            name(r.container.name.as_deref()),
            r.restart_count,
            secs(r.backoff_ms)
        ),
        Body::Cycle(c) => cycle(c),
        Body::Pressure(p) => format!(
            "{} reclaims at its limit: {}",
            name(p.cgroup.as_deref()),
            pressure(&p.pressure)
        ),
        Body::NearMiss(n) => format!(
            "NEAR MISS {} stalled at its limit for {} and survived: {}",
            name(n.cgroup.as_deref()),
            secs(n.pressure.window_ms),
            pressure(&n.pressure)
        ),
        Body::CgroupMkdir(d) => format!("cgroup created {}", d.path),
        Body::CgroupRmdir(d) => format!("cgroup removed {}", d.path),
        Body::Lost(l) => format!(
            "LOST {} records (ring buffer full), {} read errors, {} malformed",
            l.ringbuf_full, l.read_errors, l.decode_errors
        ),
        Body::Stop(s) => stop(s),
        Body::BreakdownCheck(c) => format!(
            "memory breakdown at OOM kills: {} ({})",
            if c.enabled { "on" } else { "off" },
            c.detail
        ),
    }
}

fn start(s: &Start) -> String {
    format!(
        "oom-tracer {} on Linux {}, cgroup {}; {} hooks active, {} missing",
        s.mode.as_str(),
        s.kernel,
        s.cgroup_version.map_or("?", |v| v.as_str()),
        s.hooks.active.len(),
        s.hooks.missing.len()
    )
}

fn exec(e: &Exec) -> String {
    format!(
        "{}[{}] exec in {}",
        e.proc.comm,
        e.proc.pid,
        name(e.cgroup.as_deref())
    )
}

fn alloc(a: &Alloc) -> String {
    let p = &a.proc;
    let (what, size) = match (a.kind, a.memcg_bytes) {
        (AllocKind::Anon, _) | (_, None) => ("anon memory", a.anon_rss_bytes),
        (AllocKind::File, Some(b)) => ("page cache in the cgroup +", b),
        (AllocKind::Shmem, Some(b)) => ("tmpfs/shmem in the cgroup +", b),
    };
    match a.limit_bytes {
        Some(l) if l > 0 => format!(
            "{}[{}] {what} {} of {} ({}%)",
            p.comm,
            p.pid,
            bytes(size),
            bytes(l),
            size.saturating_mul(100) / l
        ),
        _ => format!("{}[{}] {what} {}", p.comm, p.pid, bytes(size)),
    }
}

fn signal(s: &Signal) -> String {
    format!(
        "signal {} to {}[{}] from {} {}[{}]",
        s.signal,
        s.target.comm,
        s.target.pid,
        if s.from_kernel {
            "the kernel, in"
        } else {
            "user"
        },
        s.sender.comm,
        s.sender.pid
    )
}

fn oom_kill(o: &OomKill) -> String {
    let limit = match &o.memcg {
        Some(m) => format!(
            "{} hit its {}limit: usage {} / limit {}, failcnt {}",
            name(m.path.as_deref()),
            m.level
                .map(|l| format!("{} ", l.as_str()))
                .unwrap_or_default(),
            bytes(m.usage_bytes),
            bytes(m.limit_bytes),
            m.failcnt.map_or("n/a".into(), |f| f.to_string())
        ),
        None => "global OOM".to_owned(),
    };
    let mut line = format!(
        "OOM KILL {}[{}] (anon {}) — {limit}; triggered by {}[{}]",
        o.victim.comm,
        o.victim.pid,
        o.victim.anon_rss_bytes.map_or("?".into(), bytes),
        o.trigger.comm,
        o.trigger.pid
    );
    if let Some(c) = &o.cause {
        line.push_str(&format!("; cause: {}", c.text));
    }
    if let Some(b) = &o.breakdown {
        line.push_str(&format!(
            " [anon {}, file {}, shmem {}, kernel {}]",
            bytes(b.anon_bytes),
            bytes(b.file_bytes),
            bytes(b.shmem_bytes),
            bytes(b.kernel_bytes)
        ));
    }
    if let Some(t) = &o.tasks {
        let others: Vec<String> = t
            .iter()
            .filter(|t| !t.victim)
            .map(|t| format!("{}[{}] anon {}", t.comm, t.pid, bytes(t.anon_rss_bytes)))
            .collect();
        if !others.is_empty() {
            line.push_str(&format!("; also there: {}", others.join(", ")));
        }
    }
    if let Some(p) = o.pressure.as_ref().filter(|p| p.reclaims > 0) {
        line.push_str(&format!(
            "; before it: {} reclaims, stalled {:.1}s in {}",
            p.reclaims,
            p.stall_ms as f64 / 1000.0,
            secs(p.window_ms)
        ));
    }
    if let Some(c) = &o.callsites {
        line.push_str(&callsites(c));
    }
    line
}

/// `; top sites: grow_fast 40.0 MiB (71.4%), grow_slow …; at the kill:
/// grow_fast (shallow) / kernel shmem_get_folio_gfp`.
fn callsites(c: &Callsites) -> String {
    let mut out = String::new();
    if !c.top.is_empty() {
        let sites: Vec<String> = c
            .top
            .iter()
            .map(|s| {
                format!(
                    "{} {} ({:.1}%){}",
                    s.stack.top_label(),
                    bytes(s.bytes),
                    s.share_pct,
                    if s.stack.shallow { " [shallow]" } else { "" }
                )
            })
            .collect();
        out.push_str(&format!("; top sites: {}", sites.join(", ")));
    }
    let user = &c.trigger_user;
    let kernel = &c.trigger_kernel;
    out.push_str(&format!(
        "; at the kill: {}{} / kernel {}",
        user.missing
            .as_deref()
            .map_or_else(|| user.top_label(), str::to_owned),
        if user.shallow { " [shallow]" } else { "" },
        kernel_site(kernel)
    ));
    out
}

/// The kernel frame that asked for the memory: the one below the OOM
/// killer's and the memcg charge's own frames.
fn kernel_site(k: &crate::schema::Stack) -> String {
    if let Some(m) = &k.missing {
        return m.clone();
    }
    let own = |s: &str| {
        s.starts_with("bpf_")
            || s.contains("oom")
            || s.contains("mark_victim")
            || s.contains("charge")
            || s.starts_with("__traceiter")
    };
    let last_own = k
        .frames
        .iter()
        .rposition(|f| f.symbol.as_deref().is_some_and(own));
    last_own
        .and_then(|i| k.frames.get(i + 1))
        .map_or_else(|| k.top_label(), crate::schema::Frame::label)
}

fn exit(e: &Exit) -> String {
    let p = &e.proc;
    match (e.signal, e.exit_code) {
        (Some(9), _) => format!(
            "{}[{}] killed by SIGKILL ({}{})",
            p.comm,
            p.pid,
            e.verdict.map_or("?", |v| v.as_str()),
            e.killed_by
                .as_ref()
                .map(|k| format!(", sent by {}[{}]", k.comm, k.pid))
                .unwrap_or_default()
        ),
        (Some(s), _) => format!("{}[{}] killed by signal {s}", p.comm, p.pid),
        (None, Some(c)) => format!("{}[{}] exited with {c}", p.comm, p.pid),
        (None, None) => format!("{}[{}] exited", p.comm, p.pid),
    }
}

fn container_exit(e: &ContainerExit) -> String {
    format!(
        "container {} terminated: exit code {}, reason {}, ran {}",
        name(e.container.name.as_deref()),
        e.exit_code,
        e.reason.as_str(),
        secs(e.ran_ms)
    )
}

fn cycle(c: &Cycle) -> String {
    let mut parts = vec![format!(
        "container {}: {}",
        name(c.container.as_ref().and_then(|c| c.name.as_deref())),
        c.last_state_reason.map_or("running", |r| r.as_str())
    )];
    if let Some(r) = &c.ramp {
        parts.push(format!(
            "ramp {} MiB/s, limit reached after {}",
            r.growth_mib_per_s.map_or("?".into(), |g| format!("{g:.1}")),
            r.time_to_limit_ms.map_or("-".into(), secs)
        ));
    }
    if let Some(l) = &c.limit {
        parts.push(format!(
            "{} limit {}",
            l.level.map_or("", |lv| lv.as_str()),
            bytes(l.limit_bytes)
        ));
    }
    if let Some(i) = &c.incident {
        parts.push(format!(
            "{} victim(s), trigger {}[{}]",
            i.victims.len(),
            i.trigger.comm,
            i.trigger.pid
        ));
    }
    if let Some(cause) = &c.cause {
        parts.push(format!("cause: {}", cause.text));
    }
    if c.cause_carried_over {
        parts.push(
            "died at once of the same cause as the attempt before: it outlived the restart".into(),
        );
    }
    if let Some(site) = c.top_sites.first() {
        parts.push(format!(
            "top site: {} {} ({:.1}%)",
            site.stack.top_label(),
            bytes(site.bytes),
            site.share_pct
        ));
    }
    if let Some(r) = &c.restart {
        parts.push(format!(
            "back-off {} (kubelet schedule {}), next {}",
            secs(r.observed_backoff_ms),
            secs(r.expected_backoff_ms),
            secs(r.next_expected_backoff_ms)
        ));
    }
    parts.push(format!("now {}", c.state.as_str()));
    parts.join("; ")
}

fn pressure(p: &crate::schema::Pressure) -> String {
    format!(
        "{} reclaims ({} got nothing), stalled {:.1}s, {} back, limit hit {} times in {}",
        p.reclaims,
        p.fruitless,
        p.stall_ms as f64 / 1000.0,
        bytes(p.reclaimed_bytes),
        p.limit_hits,
        secs(p.window_ms)
    )
}

fn stop(s: &Stop) -> String {
    format!(
        "stopped ({}): {} OOM kills, {} restarts, {} lost records",
        s.reason, s.oom_kills, s.restarts, s.lost_events
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tests::samples;

    #[test]
    fn one_line_per_event_and_short_ids() {
        let lines: Vec<String> = samples().iter().map(line).collect();
        assert!(lines.iter().all(|l| !l.contains('\n')));
        assert_eq!(
            lines[6],
            "18:00:00.000  exit            stress[7] killed by SIGKILL (memcg_oom)"
        );
        assert!(
            lines[5].contains("OOM KILL stress[7] (anon 50Mi)"),
            "{}",
            lines[5]
        );
        assert!(
            lines[5].contains("/p/c hit its container limit"),
            "{}",
            lines[5]
        );
        assert!(!lines.iter().any(|l| l.contains('\x1b')));
        let id = "a".repeat(64);
        assert_eq!(short_ids(&format!("/pod/{id}/x")), "/pod/aaaaaaaaaaaa/x");
        assert_eq!(short_ids("beef 12"), "beef 12");
        assert!(coloured(&samples()[5]).starts_with("\x1b[1;31m"));
    }
}
