//! `cargo xtask minikube …`: the DaemonSet on a local minikube cluster.
//!
//! Builds the two images inside the minikube node (`minikube image build`,
//! which works with every driver and container runtime), deploys
//! `deploy/` with kubectl, follows the agent's records, and tears it all
//! down. Every command is printed before it runs.
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

/// The agent's image, as `deploy/daemonset.yaml` names it.
pub const AGENT_IMAGE: &str = "oom-tracer/agent:dev";
/// The memory hog's image, as `deploy/oom-example-pod.yaml` names it.
pub const STRESS_IMAGE: &str = "oom-tracer/stress:dev";

/// (image, Dockerfile relative to the workspace root).
const IMAGES: [(&str, &str); 2] = [
    (AGENT_IMAGE, "deploy/agent.Dockerfile"),
    (STRESS_IMAGE, "deploy/stress.Dockerfile"),
];
const EXAMPLE_POD: &str = "deploy/oom-example-pod.yaml";
const NAMESPACE: &str = "oom-tracer";
const SELECTOR: &str = "app.kubernetes.io/name=oom-tracer";

#[derive(clap::Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinikubeCmd {
    /// Build both images inside minikube (`minikube image build`; any driver, any runtime).
    Images,
    /// `minikube image load` both images (built locally, e.g. with `docker build`) into minikube.
    Load,
    /// `kubectl apply -k deploy/` and the example pod.
    Apply,
    /// `kubectl logs -n oom-tracer -l app.kubernetes.io/name=oom-tracer -f`: the agent's records.
    Logs,
    /// Images + Load + Apply (Load only loads what `images` did not already put in minikube).
    Up,
    /// `kubectl delete -k deploy/` and the example pod.
    Down,
}

pub fn run(root: &Path, cmd: MinikubeCmd) -> anyhow::Result<()> {
    match cmd {
        MinikubeCmd::Images => images(root),
        MinikubeCmd::Load => load(root),
        MinikubeCmd::Apply => apply(root),
        MinikubeCmd::Logs => logs(root),
        MinikubeCmd::Up => {
            images(root)?;
            // `minikube image build` leaves the images in the node's runtime:
            // load from the local daemon only what is not there (loading
            // unconditionally could replace a fresh build by a stale local image).
            ensure_loaded(root)?;
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

/// Builds both images inside the minikube node.
///
/// `minikube image build` sends its whole context directory to the node, and
/// the workspace's `target/` holds gigabytes of build output, so the context
/// is a copy of the sources (what git tracks or does not ignore) in
/// `target/minikube-context`.
fn images(root: &Path) -> anyhow::Result<()> {
    need("minikube")?;
    let ctx = stage_context(root)?;
    for (image, dockerfile) in IMAGES {
        exec(
            Command::new("minikube")
                .current_dir(&ctx)
                .args(["image", "build", "-t", image, "-f", dockerfile, "."]),
        )
        .with_context(|| {
            format!("building {image} in minikube (is the cluster running? `minikube status`)")
        })?;
    }
    eprintln!("xtask: built {AGENT_IMAGE} and {STRESS_IMAGE} inside minikube");
    Ok(())
}

/// `minikube image load` for both images, from the local docker daemon (or
/// minikube's image cache).
fn load(root: &Path) -> anyhow::Result<()> {
    need("minikube")?;
    for (image, dockerfile) in IMAGES {
        exec(
            Command::new("minikube")
                .current_dir(root)
                .args(["image", "load", image]),
        )
        .with_context(|| {
            format!(
                "loading {image} into minikube: build it locally first \
                 (docker build -f {dockerfile} -t {image} .), or build it inside minikube \
                 with `cargo xtask minikube images` (then no load is needed)"
            )
        })?;
    }
    Ok(())
}

/// Loads only the images that minikube does not have yet.
fn ensure_loaded(root: &Path) -> anyhow::Result<()> {
    need("minikube")?;
    let mut ls = Command::new("minikube");
    ls.current_dir(root).args(["image", "ls"]);
    eprintln!("xtask: {}", show(&ls));
    let out = ls.output().context("starting minikube image ls")?;
    if !out.status.success() {
        bail!(
            "minikube image ls failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    for (image, _) in IMAGES {
        if has_image(&listed, image) {
            eprintln!("xtask: {image} is in minikube");
        } else {
            exec(
                Command::new("minikube")
                    .current_dir(root)
                    .args(["image", "load", image]),
            )
            .with_context(|| format!("{image} is neither in minikube nor loadable"))?;
        }
    }
    Ok(())
}

/// Whether `minikube image ls` output lists `image` (it prints references
/// normalised with their registry, e.g. `docker.io/oom-tracer/agent:dev`).
fn has_image(listed: &str, image: &str) -> bool {
    listed.lines().map(str::trim).any(|l| {
        l == image
            || l.strip_suffix(image)
                .is_some_and(|prefix| prefix.ends_with('/'))
    })
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

fn on_path(tool: &str) -> Option<PathBuf> {
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

/// Copies the sources into `target/minikube-context` (replacing an older
/// copy) and returns that directory.
fn stage_context(root: &Path) -> anyhow::Result<PathBuf> {
    let ctx = root.join("target").join("minikube-context");
    if ctx.exists() {
        std::fs::remove_dir_all(&ctx).with_context(|| format!("removing {}", ctx.display()))?;
    }
    std::fs::create_dir_all(&ctx).with_context(|| format!("creating {}", ctx.display()))?;
    let files = source_files(root)?;
    for rel in &files {
        let from = root.join(rel);
        let Ok(meta) = from.symlink_metadata() else {
            continue; // tracked but deleted in the work tree
        };
        let to = ctx.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from)?;
            std::os::unix::fs::symlink(&target, &to)
                .with_context(|| format!("linking {}", to.display()))?;
        } else if meta.is_file() {
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    eprintln!(
        "xtask: build context {} ({} files, without target/ and .git)",
        ctx.display(),
        files.len()
    );
    Ok(ctx)
}

/// The workspace's source files, relative to `root`: what git tracks or does
/// not ignore; without git, every file outside `target/` and `.git/`.
fn source_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let git = Command::new("git")
        .current_dir(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output();
    if let Ok(out) = git
        && out.status.success()
    {
        let mut files: Vec<PathBuf> = out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let mut files = Vec::new();
    walk(root, Path::new(""), &mut files)?;
    Ok(files)
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let dir = root.join(rel);
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let rel = rel.join(&name);
        if rel == Path::new("target") || name == ".git" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(root, &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_normalised_image_names() {
        let ls = "registry.k8s.io/pause:3.10\ndocker.io/oom-tracer/agent:dev\n";
        assert!(has_image(ls, AGENT_IMAGE));
        assert!(!has_image(ls, STRESS_IMAGE));
        assert!(has_image("oom-tracer/stress:dev\n", STRESS_IMAGE));
        assert!(!has_image(
            "docker.io/xoom-tracer/stress:dev\n",
            STRESS_IMAGE
        ));
    }

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
