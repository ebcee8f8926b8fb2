//! Attaching the programs: each attach is a capability probe. What could not
//! attach is recorded with the reason, and startup logs one line listing
//! both. Only a missing OOM source is fatal.
use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, TracePoint},
};

use crate::record::{HookStatus, MissingHook};

/// How a program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Attach {
    /// tp_btf on the named tracepoint.
    TpBtf(&'static str),
    /// A classic tracepoint, category and name.
    Tracepoint(&'static str, &'static str),
}

/// A program and its attach point. `program` is the function name in
/// oom-tracer-ebpf, which is named after the attach point.
#[derive(Clone, Copy, Debug)]
pub struct Hook {
    pub program: &'static str,
    pub attach: Attach,
}

impl Hook {
    /// The name people see: `tp_btf/mark_victim`, `tracepoint/kmem/rss_stat`.
    pub fn label(&self) -> String {
        match self.attach {
            Attach::TpBtf(f) => format!("tp_btf/{f}"),
            Attach::Tracepoint(c, n) => format!("tracepoint/{c}/{n}"),
        }
    }
}

pub const MARK_VICTIM_BTF: Hook = Hook {
    program: "mark_victim",
    attach: Attach::TpBtf("mark_victim"),
};
pub const MARK_VICTIM_TP: Hook = Hook {
    program: "oom_mark_victim",
    attach: Attach::Tracepoint("oom", "mark_victim"),
};
/// The allocation ramp: tp_btf where the kernel's rss_stat passes the mm
/// (6.2+), else the classic tracepoint.
pub const RSS_STAT_BTF: Hook = Hook {
    program: "rss_stat",
    attach: Attach::TpBtf("rss_stat"),
};
pub const RSS_STAT_TP: Hook = Hook {
    program: "kmem_rss_stat",
    attach: Attach::Tracepoint("kmem", "rss_stat"),
};
/// Tasks moving into a cgroup: tp_btf (the destination as a typed pointer),
/// else the classic tracepoint.
pub const CGROUP_ATTACH_BTF: Hook = Hook {
    program: "cgroup_attach_task",
    attach: Attach::TpBtf("cgroup_attach_task"),
};
pub const CGROUP_ATTACH_TP: Hook = Hook {
    program: "cgroup_cgroup_attach_task",
    attach: Attach::Tracepoint("cgroup", "cgroup_attach_task"),
};
/// The classic-tracepoint programs that stand in for a tp_btf one.
pub const FALLBACKS: [(Hook, Hook); 2] = [
    (RSS_STAT_BTF, RSS_STAT_TP),
    (CGROUP_ATTACH_BTF, CGROUP_ATTACH_TP),
];
/// Everything but the OOM source, in attach order.
pub const LIFECYCLE: [Hook; 7] = [
    Hook {
        program: "signal_generate",
        attach: Attach::TpBtf("signal_generate"),
    },
    Hook {
        program: "sched_process_exec",
        attach: Attach::TpBtf("sched_process_exec"),
    },
    Hook {
        program: "sched_process_exit",
        attach: Attach::TpBtf("sched_process_exit"),
    },
    RSS_STAT_BTF,
    Hook {
        program: "cgroup_mkdir",
        attach: Attach::Tracepoint("cgroup", "cgroup_mkdir"),
    },
    Hook {
        program: "cgroup_rmdir",
        attach: Attach::Tracepoint("cgroup", "cgroup_rmdir"),
    },
    CGROUP_ATTACH_BTF,
];

/// Loads and attaches one program; the error text says why not.
pub fn attach(ebpf: &mut Ebpf, btf: &Btf, hook: Hook) -> Result<(), String> {
    let prog = ebpf
        .program_mut(hook.program)
        .ok_or_else(|| format!("program {} missing from the object", hook.program))?;
    match hook.attach {
        Attach::TpBtf(func) => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            p.load(func, btf).map_err(|e| load_error(hook, &e))?;
            p.attach().map_err(|e| error_chain(&e))?;
        }
        Attach::Tracepoint(cat, name) => {
            let p: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            p.load().map_err(|e| load_error(hook, &e))?;
            p.attach(cat, name).map_err(|e| error_chain(&e))?;
        }
    }
    Ok(())
}

/// A refused program load, in one line: the syscall's error and the
/// verifier's own complaint (the last line of its log that says what went
/// wrong). The whole log goes to the debug log.
fn load_error(hook: Hook, e: &aya::programs::ProgramError) -> String {
    if let aya::programs::ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
    {
        let log = verifier_log.to_string();
        tracing::debug!("{}: verifier log:\n{log}", hook.label());
        let mut s = format!("the kernel refused the program ({io_error})");
        if let Some(line) = verifier_complaint(&log) {
            s.push_str(": verifier: ");
            s.push_str(line);
        }
        return s;
    }
    error_chain(e)
}

/// The line of a verifier log that says why it refused the program: the
/// last one that is not an instruction, a register state, a source line or
/// the closing statistics.
pub fn verifier_complaint(log: &str) -> Option<&str> {
    log.lines().map(str::trim).rev().find(|l| {
        !l.is_empty()
            && !l.starts_with(';')
            && !l.starts_with("processed ")
            && !l.starts_with("verification time")
            && !l.starts_with("stack depth")
            && !l.starts_with("-- END PROG LOAD LOG --")
            && !l.split(':').next().is_some_and(|n| {
                // "12: (85) call ..." and "12: R1=..." are instructions and states.
                !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
            })
            && !l.starts_with("from ")
    })
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let t = src.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = src.source();
    }
    // Verifier logs are long: keep the first line or two.
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Collects what attached and what did not.
#[derive(Debug, Default)]
pub struct Report {
    pub status: HookStatus,
}

impl Report {
    pub fn active(&mut self, hook: Hook) {
        self.status.active.push(hook.label());
    }

    pub fn missing(&mut self, hook: Hook, reason: impl Into<String>) {
        self.status.missing.push(MissingHook {
            hook: hook.label(),
            reason: reason.into(),
        });
    }

    pub fn has_oom_source(&self) -> bool {
        self.status
            .active
            .iter()
            .any(|h| h == &MARK_VICTIM_BTF.label() || h == &MARK_VICTIM_TP.label())
    }

    /// The one startup line.
    pub fn summary(&self) -> String {
        let mut s = format!("hooks active: {}", self.status.active.join(", "));
        if self.status.missing.is_empty() {
            s.push_str("; missing: none");
        } else {
            s.push_str("; missing: ");
            let parts: Vec<String> = self
                .status
                .missing
                .iter()
                .map(|m| format!("{} ({})", m.hook, m.reason))
                .collect();
            s.push_str(&parts.join(", "));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_summary() {
        let mut r = Report::default();
        assert!(!r.has_oom_source());
        r.active(MARK_VICTIM_TP);
        r.missing(MARK_VICTIM_BTF, "EPERM");
        assert!(r.has_oom_source());
        assert_eq!(
            r.summary(),
            "hooks active: tracepoint/oom/mark_victim; missing: tp_btf/mark_victim (EPERM)"
        );
    }

    #[test]
    fn the_verifier_complaint_is_found() {
        let log = "reg type unsupported for arg#0 function mark_victim#26
0: R1=ctx(off=0,imm=0) R10=fp0
; #[btf_tracepoint(function = \"mark_victim\")]
0: (bf) r8 = r1                       ; R1=ctx(off=0,imm=0) R8_w=ctx(off=0,imm=0)
1: (79) r1 = *(u64 *)(r8 +0)
func 'mark_victim' doesn't have 1-th argument
invalid bpf_context access off=8 size=8
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
";
        assert_eq!(
            verifier_complaint(log),
            Some("invalid bpf_context access off=8 size=8")
        );
        assert_eq!(
            verifier_complaint("5: (61) r2 = *(u32 *)(r1 +0)\nR1 invalid mem access 'scalar'\n"),
            Some("R1 invalid mem access 'scalar'")
        );
        assert_eq!(verifier_complaint(""), None);
        assert_eq!(verifier_complaint("0: R1=ctx()\nprocessed 1 insns"), None);
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        #[derive(Debug)]
        struct E(String);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for E {}
        let s = error_chain(&E("é".repeat(400)));
        assert!(s.ends_with('…'));
        assert!(s.len() <= 304);
    }
}
