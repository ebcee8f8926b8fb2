//! `cargo xtask minikube …`: the DaemonSet on a local minikube cluster.
//!
//! The images are built from the same Dockerfiles and the same host-built
//! static binaries as `cargo xtask images` (one recipe): `images` stages the
//! build contexts `target/images/{agent,stress}/` (a Dockerfile and one
//! binary each) and runs `minikube image build` on them, which works with
//! every driver and container runtime; `load` loads the OCI archives that
//! `cargo xtask images` wrote. Then it deploys `deploy/` with kubectl,
//! follows the agent's records, and tears it all down. Every command is
//! printed before it runs.
//!
//! The agent's DaemonSet mounts the containerd socket, so the cluster should
//! run containerd: `minikube start --container-runtime=containerd`.
use std::{
    env,
    ffi::OsStr,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::images::{IMAGES, images_dir};

const EXAMPLE_POD: &str = "deploy/oom-example-pod.yaml";
const NAMESPACE: &str = "oom-tracer";
const SELECTOR: &str = "app.kubernetes.io/name=oom-tracer";

#[derive(clap::Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MinikubeCmd {
    /// Build the static binaries here, then both images inside minikube
    /// (`minikube image build` of target/images/{agent,stress}; any driver, any runtime).
    Images,
    /// `minikube image load target/images/{agent,stress}.tar` (the archives of `cargo xtask images`).
    Load,
    /// `kubectl apply -k deploy/` and the example pod.
    Apply,
    /// `kubectl logs -n oom-tracer -l app.kubernetes.io/name=oom-tracer -f`: the agent's records.
    Logs,
    /// Images + Apply.
    Up,
    /// `kubectl delete -k deploy/` and the example pod.
    Down,
}

pub(crate) fn run(root: &Path, cmd: MinikubeCmd) -> anyhow::Result<()> {
    match cmd {
        MinikubeCmd::Images => images(root),
        MinikubeCmd::Load => load(root),
        MinikubeCmd::Apply => apply(root),
        MinikubeCmd::Logs => logs(root),
        MinikubeCmd::Up => {
            images(root)?;
            apply(root)?;
            eprintln!(
                "xtask: deployed. Watch with `kubectl get pods -A -w`, read the records with \
                 `cargo xtask minikube logs`"
            );
            Ok(())
        }
        MinikubeCmd::Down => down(root),
    }
}

/// Builds both images inside the minikube node, from the contexts that
/// `cargo xtask images` builds from (a Dockerfile and one static binary each).
fn images(root: &Path) -> anyhow::Result<()> {
    need("minikube")?;
    let contexts = crate::images::contexts(root)?;
    for (image, ctx) in IMAGES.iter().zip(&contexts) {
        exec(
            Command::new("minikube")
                .current_dir(root)
                .args(["image", "build", "-t", image.reference])
                .arg(ctx),
        )
        .with_context(|| {
            format!(
                "building {} in minikube (is the cluster running? `minikube status`)",
                image.reference
            )
        })?;
    }
    eprintln!("xtask: built the images inside minikube");
    Ok(())
}

/// `minikube image load` of the OCI archives that `cargo xtask images` wrote.
fn load(root: &Path) -> anyhow::Result<()> {
    need("minikube")?;
    for image in &IMAGES {
        let archive = images_dir(root).join(format!("{}.tar", image.name));
        if !archive.is_file() {
            bail!(
                "{} is missing: build the images first with `cargo xtask images` \
                 (or build them inside minikube with `cargo xtask minikube images`)",
                archive.display()
            );
        }
        exec(
            Command::new("minikube")
                .current_dir(root)
                .args(["image", "load"])
                .arg(&archive),
        )
        .with_context(|| format!("loading {} into minikube", image.reference))?;
    }
    Ok(())
}

fn apply(root: &Path) -> anyhow::Result<()> {
    need("kubectl")?;
    exec(kubectl(root).args(["apply", "-k", "deploy/"]))?;
    exec(kubectl(root).args(["apply", "-f", EXAMPLE_POD]))
}

fn logs(root: &Path) -> anyhow::Result<()> {
    need("kubectl")?;
    // --tail=-1: with a selector kubectl shows only the last 10 lines by default.
    exec(kubectl(root).args(["logs", "-n", NAMESPACE, "-l", SELECTOR, "-f", "--tail=-1"]))
}

fn down(root: &Path) -> anyhow::Result<()> {
    need("kubectl")?;
    exec(kubectl(root).args(["delete", "--ignore-not-found", "-f", EXAMPLE_POD]))?;
    exec(kubectl(root).args(["delete", "--ignore-not-found", "-k", "deploy/"]))
}

fn kubectl(root: &Path) -> Command {
    let mut c = Command::new("kubectl");
    c.current_dir(root);
    c
}

/// Fails with a message naming `tool` when it is not on PATH.
fn need(tool: &str) -> anyhow::Result<()> {
    if on_path(tool).is_some() {
        return Ok(());
    }
    match tool {
        "minikube" => bail!(
            "`minikube` is not on PATH: install it (https://minikube.sigs.k8s.io/docs/start/) \
             and start a cluster with `minikube start --container-runtime=containerd`"
        ),
        "kubectl" => bail!(
            "`kubectl` is not on PATH: install it (https://kubernetes.io/docs/tasks/tools/), \
             or link minikube's own (`minikube kubectl -- version` downloads it)"
        ),
        _ => bail!("`{tool}` is not on PATH"),
    }
}

pub(crate) fn on_path(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|d| d.join(tool)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The command as a shell line (for printing), with its directory when
/// that is not the current one.
fn show(cmd: &Command) -> String {
    let here = env::current_dir().ok();
    let dir = cmd
        .get_current_dir()
        .filter(|d| here.as_deref() != Some(*d));
    let mut s = String::new();
    if let Some(dir) = dir {
        let _ = write!(s, "(cd {} && ", quote(dir.as_os_str()));
    }
    s.push_str(&quote(cmd.get_program()));
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&quote(a));
    }
    if dir.is_some() {
        s.push(')');
    }
    s
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {}", show(cmd));
    let program = cmd.get_program().to_string_lossy().into_owned();
    let st = cmd
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !st.success() {
        bail!("`{}` failed: {st}", show(cmd));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_commands_as_shell_lines() {
        let mut c = Command::new("kubectl");
        c.args(["logs", "-l", SELECTOR, "it's"]);
        assert_eq!(
            show(&c),
            r"kubectl logs -l app.kubernetes.io/name=oom-tracer 'it'\''s'"
        );
    }
}
