//! The loads: an exec storm, an allocation storm, cgroup churn, and a
//! storm of OOM kills. Every process runs inside a memory cgroup the
//! benchmark created, so it is killed and removed with it.
use std::{
    io::Write as _,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::sys::{check_interrupted, signal};

/// The exec storm: two shell loops of `/bin/true` in cgroup `cg` for `secs`.
/// Each loop counts its own execs and stops when `stopfile` appears.
/// Returns (execs, seconds).
pub(super) fn exec_storm(cg: &Path, secs: f64, stopfile: &Path) -> anyhow::Result<(u64, f64)> {
    const LOOP: &str = r#"echo $$ > "$0/cgroup.procs" || exit 1
i=0
while [ ! -e "$1" ]; do /bin/true; i=$((i+1)); done
echo $i"#;
    let _ = std::fs::remove_file(stopfile);
    let t = Instant::now();
    let spawned: Vec<std::io::Result<Child>> = (0..2)
        .map(|_| {
            Command::new("/bin/sh")
                .args(["-c", LOOP])
                .arg(cg)
                .arg(stopfile)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect();
    let slept = if spawned.iter().all(Result::is_ok) {
        super::sys::sleep(Duration::from_secs_f64(secs))
    } else {
        Ok(())
    };
    // Stop the loops whatever happened.
    std::fs::write(stopfile, b"").context("writing the storm's stop file")?;
    let elapsed = t.elapsed().as_secs_f64();
    if let Err(e) = slept {
        for c in spawned.into_iter().flatten() {
            let _ = c.wait_with_output();
        }
        let _ = std::fs::remove_file(stopfile);
        return Err(e);
    }
    let mut execs = 0;
    for c in spawned {
        let out = c.context("starting an exec loop")?.wait_with_output()?;
        let s = String::from_utf8_lossy(&out.stdout);
        execs += s
            .trim()
            .parse::<u64>()
            .with_context(|| format!("exec loop printed {s:?} ({})", out.status))?;
    }
    let _ = std::fs::remove_file(stopfile);
    Ok((execs, elapsed))
}

/// The allocation storm: stress in `cg` ramps to 400Mi in 4Mi steps, without pauses.
pub(super) fn alloc_storm(cg: &Path, stress: &Path) -> anyhow::Result<()> {
    let st = Command::new("/bin/sh")
        .args([
            "-c",
            r#"echo $$ > "$0/cgroup.procs" && exec "$1" --step 4Mi --interval 0ms --max 400Mi"#,
        ])
        .arg(cg)
        .arg(stress)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("starting stress")?;
    if !st.success() {
        bail!("the allocation storm's stress failed: {st}");
    }
    Ok(())
}

/// cgroup churn: `n` times, create a memory cgroup under `parent`, move a
/// process into it and back out, and remove it (cgroup_mkdir,
/// cgroup_attach_task ×2, cgroup_rmdir).
pub(super) fn cgroup_churn(parent: &Path, n: usize) -> anyhow::Result<()> {
    let mut helper = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting sleep")?;
    let pid = helper.id().to_string();
    let res = (|| -> anyhow::Result<()> {
        for i in 0..n {
            let d = parent.join(format!("churn-{i}"));
            std::fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
            std::fs::write(d.join("cgroup.procs"), &pid)?;
            std::fs::write(parent.join("cgroup.procs"), &pid)?;
            let until = Instant::now() + Duration::from_secs(5);
            while let Err(e) = std::fs::remove_dir(&d) {
                if Instant::now() > until {
                    bail!("rmdir {}: {e}", d.display());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    })();
    let _ = helper.kill();
    let _ = helper.wait();
    res
}

/// One armed OOM-storm process: a shell already in its memory cgroup,
/// waiting on stdin to exec stress.
pub(super) struct Armed {
    pub child: Child,
    pub cgroup: PathBuf,
}

/// Starts one waiting shell per cgroup and moves each into its cgroup.
pub(super) fn arm(stress: &Path, cgroups: &[PathBuf]) -> anyhow::Result<Vec<Armed>> {
    let mut armed = Vec::with_capacity(cgroups.len());
    for cg in cgroups {
        let child = Command::new("/bin/sh")
            .args(["-c", r#"read x && exec "$0" --step 5Mi --interval 1ms"#])
            .arg(stress)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a storm shell")?;
        let pid = child.id();
        armed.push(Armed {
            child,
            cgroup: cg.clone(),
        });
        std::fs::write(cg.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", cg.display()))?;
    }
    Ok(armed)
}

/// Lets every armed shell exec stress at once, then waits for all of them
/// (up to `timeout`). Returns how many were killed by SIGKILL and the
/// seconds from the release to the last exit.
pub(super) fn release(armed: &mut [Armed], timeout: Duration) -> anyhow::Result<(usize, f64)> {
    let t = Instant::now();
    for a in armed.iter_mut() {
        if let Some(mut stdin) = a.child.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }
    let mut killed = 0;
    let mut last = 0.0;
    let mut pending: Vec<usize> = (0..armed.len()).collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for i in pending {
            match armed[i].child.try_wait()? {
                Some(st) => {
                    if st.signal() == Some(libc::SIGKILL) {
                        killed += 1;
                    }
                    last = t.elapsed().as_secs_f64();
                }
                None => still.push(i),
            }
        }
        pending = still;
        if !pending.is_empty() {
            if t.elapsed() > timeout || check_interrupted().is_err() {
                eprintln!(
                    "xtask: bench: {} storm processes still alive after {timeout:?}: killing them",
                    pending.len()
                );
                for &i in &pending {
                    signal(armed[i].child.id(), libc::SIGKILL);
                    let _ = armed[i].child.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok((killed, last))
}
