//! Attaching the programs: each attach is a capability probe. What could not
//! attach is recorded with the reason, and startup logs one line listing
//! both. Only a missing OOM source is fatal.
use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, TracePoint},
};
use oom_tracer_common::names::{
    PROG_CGROUP_ATTACH_TASK, PROG_CGROUP_ATTACH_TASK_TP, PROG_CGROUP_MKDIR, PROG_CGROUP_MKDIR_TP,
    PROG_CGROUP_RMDIR, PROG_CGROUP_RMDIR_TP, PROG_KMEM_RSS_STAT, PROG_MARK_VICTIM,
    PROG_MARK_VICTIM_TASKS, PROG_MEMCG_GROWTH, PROG_OOM_MARK_VICTIM, PROG_RECLAIM_BEGIN,
    PROG_RECLAIM_END, PROG_RSS_STAT, PROG_SCHED_PROCESS_EXEC, PROG_SCHED_PROCESS_EXIT,
    PROG_SIGNAL_GENERATE,
};

use crate::{
    errors::chain as error_chain,
    host,
    schema::{HookStatus, MissingHook},
};

/// How a program attaches.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Attach {
    /// tp_btf on the named tracepoint.
    TpBtf(&'static str),
    /// A classic tracepoint, category and name.
    Tracepoint(&'static str, &'static str),
}

/// A program and its attach point. `program` is the function name in
/// oom-tracer-ebpf, which is named after the attach point.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hook {
    pub program: &'static str,
    pub attach: Attach,
}

impl Hook {
    /// The name people see: `tp_btf/mark_victim`, `tracepoint/kmem/rss_stat`,
    /// and the program where a second one shares the attach point
    /// (`tp_btf/mark_victim (mark_victim_tasks)`).
    pub(crate) fn label(&self) -> String {
        match self.attach {
            Attach::TpBtf(f) if f != self.program => format!("tp_btf/{f} ({})", self.program),
            Attach::TpBtf(f) => format!("tp_btf/{f}"),
            Attach::Tracepoint(c, n) => format!("tracepoint/{c}/{n}"),
        }
    }
}

pub(crate) const MARK_VICTIM_BTF: Hook = Hook {
    program: PROG_MARK_VICTIM,
    attach: Attach::TpBtf("mark_victim"),
};
pub(crate) const MARK_VICTIM_TP: Hook = Hook {
    program: PROG_OOM_MARK_VICTIM,
    attach: Attach::Tracepoint("oom", "mark_victim"),
};
/// The allocation ramp: tp_btf where the kernel's rss_stat passes the mm
/// (6.2+), else the classic tracepoint.
pub(crate) const RSS_STAT_BTF: Hook = Hook {
    program: PROG_RSS_STAT,
    attach: Attach::TpBtf("rss_stat"),
};
pub(crate) const RSS_STAT_TP: Hook = Hook {
    program: PROG_KMEM_RSS_STAT,
    attach: Attach::Tracepoint("kmem", "rss_stat"),
};
/// Tasks moving into a cgroup: tp_btf (the destination as a typed pointer),
/// else the classic tracepoint.
pub(crate) const CGROUP_ATTACH_BTF: Hook = Hook {
    program: PROG_CGROUP_ATTACH_TASK,
    attach: Attach::TpBtf("cgroup_attach_task"),
};
pub(crate) const CGROUP_ATTACH_TP: Hook = Hook {
    program: PROG_CGROUP_ATTACH_TASK_TP,
    attach: Attach::Tracepoint("cgroup", "cgroup_attach_task"),
};
/// The programs that take stacks where call sites are on.
pub(crate) const TAKES_STACKS: [&str; 4] = [
    PROG_MARK_VICTIM,
    PROG_OOM_MARK_VICTIM,
    PROG_RSS_STAT,
    PROG_KMEM_RSS_STAT,
];

/// The memory cgroup lifecycle: tp_btf (a bpf_link: no perf_event_open,
/// which Debian's perf_event_paranoid=3 refuses without CAP_SYS_ADMIN even
/// to a holder of CAP_PERFMON), else the classic tracepoints.
pub(crate) const CGROUP_MKDIR_BTF: Hook = Hook {
    program: PROG_CGROUP_MKDIR,
    attach: Attach::TpBtf("cgroup_mkdir"),
};
pub(crate) const CGROUP_MKDIR_TP: Hook = Hook {
    program: PROG_CGROUP_MKDIR_TP,
    attach: Attach::Tracepoint("cgroup", "cgroup_mkdir"),
};
pub(crate) const CGROUP_RMDIR_BTF: Hook = Hook {
    program: PROG_CGROUP_RMDIR,
    attach: Attach::TpBtf("cgroup_rmdir"),
};
pub(crate) const CGROUP_RMDIR_TP: Hook = Hook {
    program: PROG_CGROUP_RMDIR_TP,
    attach: Attach::Tracepoint("cgroup", "cgroup_rmdir"),
};
/// The classic-tracepoint programs that stand in for a tp_btf one.
pub(crate) const FALLBACKS: [(Hook, Hook); 4] = [
    (RSS_STAT_BTF, RSS_STAT_TP),
    (CGROUP_MKDIR_BTF, CGROUP_MKDIR_TP),
    (CGROUP_RMDIR_BTF, CGROUP_RMDIR_TP),
    (CGROUP_ATTACH_BTF, CGROUP_ATTACH_TP),
];
/// The tasks of the memcg at each kill: a second program on `mark_victim`.
pub(crate) const MARK_VICTIM_TASKS: Hook = Hook {
    program: PROG_MARK_VICTIM_TASKS,
    attach: Attach::TpBtf("mark_victim"),
};
/// What goes beyond the cycle: the task list at a kill, the reclaim
/// pressure before it, and the page cache and shmem ramp. Each is
/// optional; what does not attach is missing from the records, and the
/// startup line says so.
pub(crate) const ANALYSIS: [Hook; 3] = [
    Hook {
        program: PROG_RECLAIM_BEGIN,
        attach: Attach::TpBtf("mm_vmscan_memcg_reclaim_begin"),
    },
    Hook {
        program: PROG_RECLAIM_END,
        attach: Attach::TpBtf("mm_vmscan_memcg_reclaim_end"),
    },
    Hook {
        program: PROG_MEMCG_GROWTH,
        attach: Attach::TpBtf("mod_memcg_lruvec_state"),
    },
];

/// Everything but the OOM source, in attach order.
pub(crate) const LIFECYCLE: [Hook; 7] = [
    Hook {
        program: PROG_SIGNAL_GENERATE,
        attach: Attach::TpBtf("signal_generate"),
    },
    Hook {
        program: PROG_SCHED_PROCESS_EXEC,
        attach: Attach::TpBtf("sched_process_exec"),
    },
    Hook {
        program: PROG_SCHED_PROCESS_EXIT,
        attach: Attach::TpBtf("sched_process_exit"),
    },
    RSS_STAT_BTF,
    CGROUP_MKDIR_BTF,
    CGROUP_RMDIR_BTF,
    CGROUP_ATTACH_BTF,
];

/// Loads and attaches one program; the error text says why not.
pub(crate) fn attach(ebpf: &mut Ebpf, btf: &Btf, hook: Hook) -> Result<(), String> {
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
        if io_error.kind() == std::io::ErrorKind::PermissionDenied {
            let missing = host::missing_bpf_caps();
            if !missing.is_empty() {
                let missing: Vec<String> = missing.iter().map(|c| format!("missing {c}")).collect();
                s.push_str(&format!(": {}", missing.join(", ")));
            }
        }
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
pub(crate) fn verifier_complaint(log: &str) -> Option<&str> {
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

/// Collects what attached and what did not.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub status: HookStatus,
}

impl Report {
    pub(crate) fn active(&mut self, hook: Hook) {
        self.status.active.push(hook.label());
    }

    pub(crate) fn missing(&mut self, hook: Hook, reason: impl Into<String>) {
        self.status.missing.push(MissingHook {
            hook: hook.label(),
            reason: reason.into(),
        });
    }

    pub(crate) fn has_oom_source(&self) -> bool {
        self.status
            .active
            .iter()
            .any(|h| h == &MARK_VICTIM_BTF.label() || h == &MARK_VICTIM_TP.label())
    }

    /// The one startup line.
    pub(crate) fn summary(&self) -> String {
        let active = match self.status.active.as_slice() {
            [] => "none".to_owned(),
            hooks => hooks.join(", "),
        };
        let mut s = format!("hooks active: {active}");
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
        assert!(
            Report::default()
                .summary()
                .starts_with("hooks active: none; ")
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
}
