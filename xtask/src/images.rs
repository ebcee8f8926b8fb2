//! `cargo xtask images`: the two container images, from `deploy/*.Dockerfile`.
//!
//! One recipe for every way the images are built:
//!
//! 1. the static binaries are built on the host
//!    (`cargo build --release --target x86_64-unknown-linux-musl`);
//! 2. each image gets a build context of its own, `target/images/<name>/`,
//!    holding its Dockerfile (copied from `deploy/`) and its one binary;
//! 3. a Dockerfile builder builds it there: docker when an engine answers,
//!    else buildah (Debian's, installed when missing; vfs storage, chroot
//!    isolation, so no daemon, no registry and no pull: the base is
//!    `scratch`), and the image is written as an OCI archive,
//!    `target/images/<name>.tar`.
//!
//! `cargo xtask minikube images` runs 1 and 2, then `minikube image build`
//! on the same contexts.
use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};

use super::{apt_install, cargo, output, run, setup, with_path};

/// The target of the images' static binaries.
pub(crate) const MUSL: &str = "x86_64-unknown-linux-musl";

/// One image of `deploy/`.
pub(crate) struct Image {
    /// Short name: the build context `target/images/<name>/` and the
    /// archive `target/images/<name>.tar`.
    pub name: &'static str,
    /// The reference the manifests use.
    pub reference: &'static str,
    /// The Dockerfile, relative to the workspace root.
    pub dockerfile: &'static str,
    /// The workspace binary the image holds (COPY'd by its Dockerfile).
    pub binary: &'static str,
    /// Whether the binary goes in without its symbol table.
    pub strip: bool,
}

pub(crate) const IMAGES: [Image; 2] = [
    Image {
        name: "agent",
        reference: "oom-tracer/agent:dev",
        dockerfile: "deploy/agent.Dockerfile",
        binary: "oom-tracer",
        // A fifth of the agent (the eBPF object is data and stays).
        strip: true,
    },
    Image {
        name: "stress",
        reference: "oom-tracer/stress:dev",
        dockerfile: "deploy/stress.Dockerfile",
        binary: "stress",
        // The example workload keeps its symbols: the agent names its
        // call sites from them (docs/callsites.md).
        strip: false,
    },
];

/// `target/images`.
pub(crate) fn images_dir(root: &Path) -> PathBuf {
    root.join("target").join("images")
}

/// `cargo xtask images`: binaries, contexts, images, archives.
pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    let contexts = contexts(root)?;
    let builder = Builder::find(root)?;
    for (image, ctx) in IMAGES.iter().zip(&contexts) {
        let archive = images_dir(root).join(format!("{}.tar", image.name));
        builder
            .build(image, ctx, &archive)
            .with_context(|| format!("building {} from {}", image.reference, image.dockerfile))?;
        let size = std::fs::metadata(&archive)
            .with_context(|| format!("{} was not written", archive.display()))?
            .len();
        eprintln!(
            "xtask: {} -> {} ({})",
            image.reference,
            archive.display(),
            mib(size)
        );
    }
    Ok(())
}

/// Builds the static binaries and stages one build context per image;
/// returns the contexts, in the order of [`IMAGES`].
pub(crate) fn contexts(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    static_binaries(root)?;
    let mut out = Vec::new();
    for image in &IMAGES {
        let ctx = images_dir(root).join(image.name);
        if ctx.exists() {
            std::fs::remove_dir_all(&ctx).with_context(|| format!("removing {}", ctx.display()))?;
        }
        std::fs::create_dir_all(&ctx).with_context(|| format!("creating {}", ctx.display()))?;
        std::fs::copy(root.join(image.dockerfile), ctx.join("Dockerfile"))
            .with_context(|| format!("copying {}", image.dockerfile))?;
        let bin = musl_binary(root, image.binary);
        let staged = ctx.join(image.binary);
        // Without its symbol table where the image says so, when binutils'
        // strip is there.
        if image.strip && crate::minikube::on_path("strip").is_some() {
            run(Command::new("strip")
                .args(["--strip-all", "-o"])
                .arg(&staged)
                .arg(&bin))?;
        } else {
            std::fs::copy(&bin, &staged).with_context(|| format!("copying {}", bin.display()))?;
        }
        eprintln!(
            "xtask: build context {}: Dockerfile ({}), {} ({})",
            ctx.display(),
            image.dockerfile,
            image.binary,
            mib(std::fs::metadata(&staged)?.len())
        );
        out.push(ctx);
    }
    Ok(out)
}

fn musl_binary(root: &Path, name: &str) -> PathBuf {
    root.join("target").join(MUSL).join("release").join(name)
}

/// `cargo build --release --target x86_64-unknown-linux-musl` of the agent
/// and stress, with what that needs: the rustup target and musl-gcc (ring
/// compiles C and assembly with it).
fn static_binaries(root: &Path) -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == MUSL) {
        run(Command::new("rustup").args(["target", "add", MUSL]))?;
    }
    if crate::minikube::on_path("musl-gcc").is_none() {
        apt_install(
            &["musl-tools"],
            "musl-gcc, for ring's C code in the static agent",
        )?;
    }
    let bin = setup()?;
    let mut c = cargo();
    c.args(["build", "--release", "--target", MUSL]).args([
        "--package",
        "oom-tracer",
        "--package",
        "stress",
    ]);
    with_path(&mut c, &bin);
    run(&mut c)?;
    for image in &IMAGES {
        let path = musl_binary(root, image.binary);
        check_static(&path).with_context(|| format!("checking {}", path.display()))?;
    }
    Ok(())
}

/// Fails unless `path` is a statically linked ELF executable: no program
/// interpreter and no needed shared library (a static-pie binary still has
/// a dynamic section, for relocating itself).
pub(crate) fn check_static(path: &Path) -> anyhow::Result<()> {
    let mut elf = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut elf)?;
    ensure!(
        elf.len() >= 64 && elf.starts_with(b"\x7fELF\x02\x01"),
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| -> anyhow::Result<u64> {
        let b = elf.get(o..o + 8).context("truncated ELF file")?;
        Ok(u64::from_le_bytes(b.try_into()?))
    };
    let (phoff, phentsize, phnum) = (u64_at(0x20)? as usize, u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let kind = u32::from_le_bytes(elf.get(ph..ph + 4).context("truncated")?.try_into()?);
        const PT_DYNAMIC: u32 = 2;
        const PT_INTERP: u32 = 3;
        ensure!(
            kind != PT_INTERP,
            "dynamically linked: it has a program interpreter"
        );
        if kind == PT_DYNAMIC {
            let (off, size) = (u64_at(ph + 8)? as usize, u64_at(ph + 32)? as usize);
            for entry in (off..off + size).step_by(16) {
                const DT_NULL: u64 = 0;
                const DT_NEEDED: u64 = 1;
                match u64_at(entry)? {
                    DT_NULL => break,
                    DT_NEEDED => bail!("dynamically linked: it needs shared libraries"),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// The Dockerfile builder that runs here.
enum Builder {
    /// A docker engine answered.
    Docker,
    /// buildah with its own storage under `target/images/buildah`.
    Buildah { root: PathBuf },
}

impl Builder {
    fn find(workspace: &Path) -> anyhow::Result<Self> {
        if crate::minikube::on_path("docker").is_some()
            && Command::new("docker")
                .args(["version", "--format", "{{.Server.Version}}"])
                .output()
                .is_ok_and(|o| o.status.success())
        {
            eprintln!("xtask: a docker engine answers: building with docker");
            return Ok(Self::Docker);
        }
        if crate::minikube::on_path("buildah").is_none() {
            apt_install(
                &["buildah"],
                "a Dockerfile builder without a daemon; no docker engine answers here",
            )?;
        }
        let root = images_dir(workspace).join("buildah");
        std::fs::create_dir_all(&root)?;
        // Pushing to an archive consults a signature policy; this one accepts
        // what it is given, and only these two local images pass through it.
        std::fs::write(
            root.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )?;
        Ok(Self::Buildah { root })
    }

    fn build(&self, image: &Image, ctx: &Path, archive: &Path) -> anyhow::Result<()> {
        let dockerfile = ctx.join("Dockerfile");
        let tmp = archive.with_extension("tar.tmp");
        let _ = std::fs::remove_file(&tmp);
        match self {
            Self::Docker => {
                run(Command::new("docker")
                    .args(["build", "-t", image.reference, "-f"])
                    .arg(&dockerfile)
                    .arg(ctx))?;
                // docker >= 25 saves an OCI image layout (with docker's
                // manifest.json beside it).
                run(Command::new("docker")
                    .args(["save", "-o"])
                    .arg(&tmp)
                    .arg(image.reference))?;
            }
            Self::Buildah { root } => {
                run(self
                    .buildah(root)
                    .args(["bud", "--isolation", "chroot"])
                    // Reproducible: the same binary gives the same image.
                    .args(["--timestamp", "0", "--layers=false"])
                    .args(["-t", image.reference, "-f"])
                    .arg(&dockerfile)
                    .arg(ctx))?;
                // The archive names the image in full, as the CRI resolves
                // the manifests' short `oom-tracer/agent:dev`: `ctr images
                // import` (and so `minikube image load` on a containerd
                // node) takes the name as written.
                let dest = format!(
                    "oci-archive:{}:docker.io/{}",
                    tmp.display(),
                    image.reference
                );
                run(self
                    .buildah(root)
                    .arg("push")
                    .arg(format!(
                        "--signature-policy={}",
                        root.join("policy.json").display()
                    ))
                    .arg(image.reference)
                    .arg(dest))?;
            }
        }
        std::fs::rename(&tmp, archive)
            .with_context(|| format!("moving {} to {}", tmp.display(), archive.display()))
    }

    fn buildah(&self, root: &Path) -> Command {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(root.join("storage"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(["--storage-driver", "vfs"]);
        c
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
