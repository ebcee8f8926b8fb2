//! The check, on a thread of its own beside the tracing: a child process
//! (`child.rs`) holds memory in a probe cgroup made for it, or where that
//! cannot be made or entered (a read-only mount, a cgroup namespace that
//! hides the parent), in the tracer's own cgroup, found by the memcg id
//! the kernel reports rather than by /proc/self/cgroup. The tracer itself
//! never changes cgroup. Its programs copy the child's memcg statistics
//! when the tracer signals the child (`signal_generate` answers senders
//! in the `PROBE` map); `memory.stat` is read just before and just after.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, Sender},
    time::Duration,
};

use oom_tracer_common::MemcgStats;

use super::{CheckError, ProbeSite, Verdict, child::SUBCOMMAND, compare};
use crate::{
    bpf::memstat::StatLayout,
    cgroup::{
        MemoryHierarchy,
        pod::{OwnedCgroup, PodCgroups},
    },
    errors,
};

/// How long one probe may take to be answered: the answer comes through
/// the ring buffer, which the tracer drains when it traces (an agent may
/// list a slow runtime's containers first).
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Tries where the numbers may move under the check (the tracer's own
/// cgroup, which the tracer's own allocations share).
const TRIES_SHARED: usize = 3;

/// What the check needs from the tracer.
pub(super) struct Request {
    pub layouts: Vec<StatLayout>,
    pub hierarchy: MemoryHierarchy,
    pub site: ProbeSite,
    pub page: u64,
}

/// Runs the check, sends its verdict, then removes what it made.
pub(super) fn run(req: Request, answers: Receiver<MemcgStats>, verdict: Sender<Verdict>) {
    let mut made = None;
    let result = check(&req, &answers, &mut made);
    let shared = made.as_ref().and_then(|m: &Made| m.why_shared.clone());
    let _ = verdict.send(result.map_err(|e| match shared {
        // What the check tried where the probe cgroup could not be had.
        Some(why) => format!(
            "{} (a child process in the tracer's own cgroup; no probe cgroup: {why})",
            errors::chain(&e)
        ),
        None => errors::chain(&e),
    }));
    if let Some(m) = made {
        m.remove();
    }
}

/// The child and the probe cgroup, ended and removed on every path.
struct Made {
    child: ProbeChild,
    cgroup: Option<OwnedCgroup>,
    /// The probe cgroup's parent, removed with it if left empty.
    parent: Option<PathBuf>,
    /// Why the child shares the tracer's cgroup, if it does.
    why_shared: Option<String>,
}

impl Made {
    fn remove(mut self) {
        self.child.end();
        if let Some(c) = self.cgroup.take()
            && let Err(e) = c.remove(Duration::from_secs(2))
        {
            tracing::warn!("{}", errors::chain(&e));
        }
        if let Some(p) = self.parent.take() {
            let _ = std::fs::remove_dir(p);
        }
    }
}

fn check(
    req: &Request,
    answers: &Receiver<MemcgStats>,
    made: &mut Option<Made>,
) -> Result<(StatLayout, String), CheckError> {
    let h = &req.hierarchy;
    let child = ProbeChild::spawn().map_err(CheckError::Child)?;
    let pid = child.pid();
    let m = made.insert(Made {
        child,
        cgroup: None,
        parent: None,
        why_shared: None,
    });
    // Where the child's memory goes: a probe cgroup, else where it is.
    match probe_cgroup(h, &req.site, pid) {
        Ok((cgroup, parent)) => {
            m.cgroup = Some(cgroup);
            m.parent = parent;
        }
        Err((e, parent)) => {
            m.parent = parent;
            m.why_shared = Some(errors::chain(&e));
        }
    }
    m.child.load()?;
    let first = probe(&m.child, answers)?;
    let dir = match &m.cgroup {
        Some(c) if c.id == first.memcg_id => c.dir.clone(),
        Some(c) => {
            return Err(CheckError::Elsewhere {
                wanted: c.path.clone(),
                memcg: first.memcg_id,
            });
        }
        None => h
            .find(first.memcg_id)
            .ok_or_else(|| CheckError::NotInView(first.memcg_id, h.mount.clone()))?,
    };
    let path = h.path_of(&dir).unwrap_or_else(|| dir.display().to_string());
    let (where_, tries) = match &m.why_shared {
        None => ("a child process in a probe cgroup".to_owned(), 1),
        Some(why) => (
            format!("a child process in the tracer's own cgroup; no probe cgroup: {why}"),
            TRIES_SHARED,
        ),
    };
    let mut last_err = String::new();
    for _ in 0..tries {
        let before = compare::read_stats(h, &dir)?;
        let raw = probe(&m.child, answers)?;
        let after = compare::read_stats(h, &dir)?;
        for layout in &req.layouts {
            match compare::compare(layout, &raw, &before, &after, req.page, h.version) {
                Ok(checked) => {
                    let detail = format!(
                        "{} match memory.stat of {path} ({where_}); layout: {}",
                        checked.join(", "),
                        layout.how
                    );
                    return Ok((layout.clone(), detail));
                }
                Err(e) => last_err = e,
            }
        }
    }
    Err(CheckError::Mismatch(format!(
        "the kernel's statistics of {path} do not match its memory.stat: {last_err}"
    )))
}

/// Makes `<parent>/probe-<pid>` and puts the child there. On failure, the
/// error; either way the parent to remove once the probe is gone, if the
/// site says so (`remove_parent`).
fn probe_cgroup(
    h: &MemoryHierarchy,
    site: &ProbeSite,
    child: u32,
) -> Result<(OwnedCgroup, Option<PathBuf>), (CheckError, Option<PathBuf>)> {
    let parent_dir = h.dir(&site.parent);
    // Removed if it is left empty, whoever made it: agents starting together
    // share it, and the one that made it may end while another's probe is
    // inside.
    let parent_made = site.remove_parent.then(|| parent_dir.clone());
    let name = format!("probe-{}", std::process::id());
    let pods = PodCgroups::create(h, &site.parent, &name, None)
        .map_err(|e| (CheckError::Cgroup(e), parent_made.clone()))?;
    let procs = pods.pod.dir.join("cgroup.procs");
    if let Err(source) = std::fs::write(&procs, child.to_string()) {
        let _ = pods.pod.remove(Duration::from_millis(200));
        return Err((
            CheckError::Place {
                path: procs,
                source,
            },
            parent_made,
        ));
    }
    Ok((pods.pod, parent_made))
}

/// Has the programs copy the child's memcg statistics.
fn probe(child: &ProbeChild, answers: &Receiver<MemcgStats>) -> Result<MemcgStats, CheckError> {
    // An answer left from a probe that timed out is not this one's.
    while answers.try_recv().is_ok() {}
    child.signal();
    match answers.recv_timeout(ANSWER_WAIT) {
        Ok(stats) => Ok(stats),
        Err(RecvTimeoutError::Timeout) => Err(CheckError::NoAnswer),
        Err(RecvTimeoutError::Disconnected) => Err(CheckError::Cancelled),
    }
}

/// The child process, killed and reaped when the check is done.
struct ProbeChild {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ProbeChild {
    fn spawn() -> std::io::Result<Self> {
        let mut cmd = Command::new(exe());
        cmd.arg(SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: prctl is async-signal-safe; the child dies with the
        // thread that started it, should the tracer be SIGKILLed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| {
            let _ = child.kill();
            std::io::Error::other("no stdout pipe")
        })?;
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Tells the child to charge its memory; waits until it has.
    fn load(&mut self) -> Result<(), CheckError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or(CheckError::ChildSaid("no stdin".into()))?;
        writeln!(stdin, "go")
            .and_then(|()| stdin.flush())
            .map_err(CheckError::Child)?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(CheckError::Child)?;
        match line.trim() {
            "ready" => Ok(()),
            "" => Err(CheckError::ChildSaid(format!(
                "it ended before charging its memory ({:?})",
                self.child.try_wait().ok().flatten()
            ))),
            other => Err(CheckError::ChildSaid(other.to_owned())),
        }
    }

    fn signal(&self) {
        let pid = i32::try_from(self.pid()).unwrap_or(0);
        // SAFETY: a signal whose default is to be ignored (SIGWINCH), to
        // our own child, which installs no handler.
        unsafe { libc::kill(pid, libc::SIGWINCH) };
    }

    fn end(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This program, to re-execute: /proc/self/exe works even where the
/// binary was replaced since it started.
fn exe() -> &'static Path {
    Path::new("/proc/self/exe")
}
