//! Attaching the programs: each attach is a capability probe (`hooks.rs`),
//! written down in the startup report, with a fallback where one exists.
use std::path::PathBuf;

use aya::{Btf, Ebpf};
use oom_tracer_common::{
    KernelOffsets, OFFSET_ABSENT, TracepointLayout,
    names::{PROG_CGROUP_MKDIR, PROG_CGROUP_MKDIR_TP, PROG_CGROUP_RMDIR, PROG_CGROUP_RMDIR_TP},
};

use super::{
    super::{
        hooks::{
            self, ANALYSIS, Attach, CGROUP_ATTACH_TP, FALLBACKS, Hook, LIFECYCLE, MARK_VICTIM_BTF,
            MARK_VICTIM_TASKS, MARK_VICTIM_TP, RSS_STAT_BTF, RSS_STAT_TP, Report,
        },
        options::OomSourceChoice,
    },
    KernelFacts,
};
use crate::tracefs;

/// Attaches programs and writes down what attached and what did not.
pub(super) struct Attacher<'a> {
    pub(super) ebpf: &'a mut Ebpf,
    pub(super) btf: &'a Btf,
    pub(super) trace_root: &'a PathBuf,
    pub(super) layout: TracepointLayout,
    pub(super) skip: &'a [String],
    pub(super) report: Report,
    /// With call sites on: why programs that take stacks failed ("": none).
    pub(super) stacks: Option<String>,
}

impl Attacher<'_> {
    pub(super) fn skipped(&self, h: Hook) -> bool {
        self.skip.iter().any(|s| s == h.program)
    }

    /// Attaches `hook`, or writes down why not.
    pub(super) fn try_attach(&mut self, hook: Hook) -> bool {
        if let Attach::Tracepoint(cat, name) = hook.attach {
            if !tracefs::has_event(self.trace_root, cat, name) {
                let why = format!("tracepoint {cat}/{name} not in this kernel");
                self.report.missing(hook, why);
                return false;
            }
            if self.needed_offset(hook) == OFFSET_ABSENT {
                let why = format!("tracepoint {cat}/{name} lacks a field oom-tracer reads");
                self.report.missing(hook, why);
                return false;
            }
        }
        match hooks::attach(self.ebpf, self.btf, hook) {
            Ok(()) => {
                self.report.active(hook);
                true
            }
            Err(e) => {
                if let Some(why) = self.stacks.as_mut()
                    && hooks::TAKES_STACKS.contains(&hook.program)
                {
                    *why = format!("{}: {e}", hook.label());
                }
                self.report.missing(hook, e);
                false
            }
        }
    }

    /// The classic tracepoint field a program cannot do without.
    pub(super) fn needed_offset(&self, hook: Hook) -> u32 {
        let l = &self.layout;
        match hook.program {
            p if p == MARK_VICTIM_TP.program => l.mv_pid,
            p if p == RSS_STAT_TP.program => l.rss_size,
            p if p == CGROUP_ATTACH_TP.program => l.at_id,
            PROG_CGROUP_MKDIR_TP | PROG_CGROUP_RMDIR_TP => l.cg_id,
            _ => 0,
        }
    }

    /// The OOM source: tp_btf where the tracepoint passes the victim's
    /// task, else the classic tracepoint.
    /// Returns whether the tp_btf program attached.
    pub(super) fn oom_source(&mut self, choice: OomSourceChoice, has_task: Option<bool>) -> bool {
        let btf_ok = match (choice, has_task) {
            (OomSourceChoice::Tracepoint, _) => {
                let why = "not selected (--oom-source tracepoint)";
                self.report.missing(MARK_VICTIM_BTF, why);
                false
            }
            (_, Some(true)) => self.try_attach(MARK_VICTIM_BTF),
            (_, Some(false)) => {
                let why = "this kernel's mark_victim passes a pid, not the task (before 6.8)";
                self.report.missing(MARK_VICTIM_BTF, why);
                false
            }
            (_, None) => {
                let why = "no btf_trace_mark_victim in kernel BTF";
                self.report.missing(MARK_VICTIM_BTF, why);
                false
            }
        };
        if btf_ok {
            return true;
        }
        if choice == OomSourceChoice::TpBtf {
            self.report
                .missing(MARK_VICTIM_TP, "not selected (--oom-source tp-btf)");
        } else {
            self.try_attach(MARK_VICTIM_TP);
        }
        false
    }

    /// The task list (after the tp_btf OOM source only: it follows its
    /// record), then the pressure and growth hooks. Returns whether the
    /// task list attached.
    pub(super) fn analysis(&mut self, btf_oom: bool) -> bool {
        let tasks = if self.skipped(MARK_VICTIM_TASKS) {
            self.report
                .missing(MARK_VICTIM_TASKS, "skipped (--skip-hook)");
            false
        } else if !btf_oom {
            let why = "needs the tp_btf OOM source, which is not attached";
            self.report.missing(MARK_VICTIM_TASKS, why);
            false
        } else {
            self.try_attach(MARK_VICTIM_TASKS)
        };
        for hook in ANALYSIS {
            if self.skipped(hook) {
                self.report.missing(hook, "skipped (--skip-hook)");
            } else {
                self.try_attach(hook);
            }
        }
        tasks
    }

    /// Everything but the OOM source, in the table's order.
    pub(super) fn lifecycle(&mut self, facts: &KernelFacts) {
        for hook in LIFECYCLE {
            let fallback = FALLBACKS.iter().find(|(b, _)| b.program == hook.program);
            if let Some(&(btf_hook, classic)) = fallback {
                let (has_args, why_not) = if btf_hook.program == RSS_STAT_BTF.program {
                    let why = "this kernel's rss_stat passes no mm (before 6.2)";
                    (facts.rss_stat_has_mm, why)
                } else if btf_hook.program == PROG_CGROUP_MKDIR
                    || btf_hook.program == PROG_CGROUP_RMDIR
                {
                    let why = "this kernel's cgroup_mkdir/cgroup_rmdir pass no cgroup";
                    (
                        facts.dir_has_cgroup && offsets_for_dirs(&facts.offsets),
                        why,
                    )
                } else {
                    let why = "this kernel's cgroup_attach_task passes no cgroup";
                    (facts.attach_has_cgroup, why)
                };
                self.btf_or_classic(btf_hook, classic, has_args, why_not);
            } else if self.skipped(hook) {
                self.report.missing(hook, "skipped (--skip-hook)");
            } else {
                self.try_attach(hook);
            }
        }
    }

    /// `btf_hook` where the kernel's tracepoint passes what it reads
    /// (`has_args`), else the classic tracepoint `classic`.
    pub(super) fn btf_or_classic(
        &mut self,
        btf_hook: Hook,
        classic: Hook,
        has_args: bool,
        why_not: &str,
    ) {
        let btf_ok = if self.skipped(btf_hook) {
            self.report.missing(btf_hook, "skipped (--skip-hook)");
            false
        } else if !has_args {
            self.report.missing(btf_hook, why_not);
            false
        } else {
            self.try_attach(btf_hook)
        };
        if btf_ok {
            return;
        }
        if self.skipped(classic) {
            self.report.missing(classic, "skipped (--skip-hook)");
        } else {
            self.try_attach(classic);
        }
    }
}

/// Whether BTF gave every field the tp_btf cgroup_mkdir/rmdir programs read.
fn offsets_for_dirs(k: &KernelOffsets) -> bool {
    [
        k.cgroup_root,
        k.root_hierarchy_id,
        k.cgroup_kn,
        k.kn_id,
        k.cgroup_level,
    ]
    .iter()
    .all(|&o| o != OFFSET_ABSENT)
}
