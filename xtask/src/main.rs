//! `cargo xtask`: set-up and workflows that plain cargo cannot express.
//!
//! - `build-ebpf`: install what the eBPF build needs (nightly rust-src,
//!   bpf-linker built against nightly's own libLLVM) and build the object;
//! - `build`: release binaries `target/release/{oom-tracer,stress}`;
//! - `demo`: build with the dev profile (quick to compile, and shared
//!   with `test`; see Cargo.toml), then the local stress cycle under the
//!   tracer;
//! - `lint`: rustfmt and clippy (host crates, and the eBPF crate on its target);
//! - `test`: lint, build, then every test (unit and privileged integration);
//! - `images`: the agent's and stress's container images from `deploy/`.
//!
//! Every cargo command they run gets `PROTOC` (the CRI client's build script
//! compiles .proto files): a protoc vendored in xtask, so that the machine
//! needs no protobuf-compiler.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod bench;
mod images;
mod minikube;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install nightly rust-src and bpf-linker if missing, then build the eBPF object.
    BuildEbpf,
    /// Build release binaries: target/release/oom-tracer and target/release/stress.
    Build,
    /// Build target/debug/{oom-tracer,stress} (the dev profile: quick to
    /// compile, and shared with `test`), then run `oom-tracer run` on
    /// stress under a 50Mi limit for a few restarts, as a pretty timeline
    /// (root).
    Demo {
        /// Restarts before the demo ends.
        #[arg(long, default_value_t = 3)]
        restarts: u32,
        /// Build what the demo runs, and stop there (needs no root).
        #[arg(long)]
        no_run: bool,
    },
    /// Build, then benchmark oom-tracer side by side with bpftrace (root).
    Bench(bench::BenchArgs),
    /// The DaemonSet on minikube: build and load the images, apply, show logs.
    #[command(subcommand)]
    Minikube(minikube::MinikubeCmd),
    /// Build the images oom-tracer/agent:dev and oom-tracer/stress:dev from
    /// deploy/*.Dockerfile (static musl binaries built here) into
    /// target/images/{agent,stress}.tar (OCI archives).
    Images,
    /// What `test` checks first: rustfmt, and clippy with warnings as
    /// errors on the host crates and on the eBPF crate for its own target.
    Lint,
    /// Build, then run all tests (the integration tests need root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Where xtask keeps bpf-linker and the libLLVM links (same rule as
/// oom-tracer/build.rs): $OOM_TRACER_TOOLS_DIR, else ~/.cache/oom-tracer.
fn tools_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = env::var_os("OOM_TRACER_TOOLS_DIR") {
        return Ok(PathBuf::from(d));
    }
    let cache = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither OOM_TRACER_TOOLS_DIR, XDG_CACHE_HOME nor HOME is set")?;
    Ok(cache.join("oom-tracer"))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let st = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(())
}

/// Installs Debian packages (as setup.sh does for containerd): `why` says
/// what needs them.
fn apt_install(packages: &[&str], why: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "{} ({why}) is missing: install it (apt-get install {}) or run as root, \
             which installs it",
            packages.join(", "),
            packages.join(" ")
        );
    }
    let install = || {
        let mut c = Command::new("apt-get");
        c.args(["install", "-y", "-q", "--no-install-recommends"])
            // Another apt on the machine: wait for it rather than fail.
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    eprintln!("xtask: installing {} ({why})", packages.join(" "));
    if run(&mut install()).is_ok() {
        return Ok(());
    }
    // The package lists may be absent or stale on a fresh machine.
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(&mut install()).with_context(|| format!("installing {}", packages.join(" ")))
}

/// Starts (or repairs) the private containerd the agent's tests and the
/// node bench drive over the CRI. Its output goes to stderr.
fn start_test_containerd() -> anyhow::Result<()> {
    let mut c = Command::new("bash");
    c.arg(workspace_root().join("tests/containerd/setup.sh"))
        .stdout(std::io::stderr());
    run(&mut c).context(
        "starting the test containerd (tests/containerd/setup.sh) failed; \
         its log is /var/log/oom-tracer-test-containerd.log",
    )
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs nightly's rust-src and a bpf-linker linked against nightly's
/// own libLLVM; returns the directory holding `bpf-linker`.
fn setup() -> anyhow::Result<PathBuf> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))
    .context("the nightly toolchain is needed to build eBPF (rustup toolchain install nightly)")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }

    let tools = tools_dir()?;
    let bin = tools.join("bpf-linker").join("bin");
    let linker = bin.join("bpf-linker");
    let sysroot =
        output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?;
    let sysroot = PathBuf::from(sysroot.trim());
    // nightly ships libLLVM.so.<major>.<minor>-rust-<version>; bpf-linker's
    // llvm-sys wants LLVM_PREFIX/lib/libLLVM.so.
    let lib = sysroot.join("lib");
    let llvm = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}", lib.display()))?;
    let major = llvm
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let stamp = tools.join("bpf-linker").join("built-against");
    let want = format!("{BPF_LINKER_VERSION} {llvm}");
    if linker.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return Ok(bin);
    }
    let prefix = tools.join(format!("llvm-{major}"));
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    for name in ["libLLVM.so".to_owned(), llvm.clone()] {
        let link = prefix_lib.join(&name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib.join(&llvm), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} (once; about a minute)"
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
            "--root",
        ])
        .arg(tools.join("bpf-linker"))
        .env("LLVM_PREFIX", &prefix)
        // Find libLLVM at run time without LD_LIBRARY_PATH.
        .env(
            "RUSTFLAGS",
            format!("-C link-args=-Wl,-rpath,{}", prefix_lib.display()),
        ))?;
    std::fs::write(&stamp, want)?;
    Ok(bin)
}

fn with_path(cmd: &mut Command, bin: &Path) {
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.to_owned()];
    paths.extend(env::split_paths(&path));
    cmd.env("PATH", env::join_paths(paths).expect("PATH joins"));
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    // k8s-cri's build script runs $PROTOC (else `protoc` from PATH).
    if env::var_os("PROTOC").is_none()
        && let Ok(protoc) = protoc_bin_vendored::protoc_bin_path()
    {
        c.env("PROTOC", protoc);
    }
    c
}

fn build_ebpf() -> anyhow::Result<()> {
    let bin = setup()?;
    let root = workspace_root();
    run(&mut ebpf_cargo(&bin, "build"))?;
    let obj = root.join("target/bpfel-unknown-none/release/oom-tracer");
    let size = std::fs::metadata(&obj).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "xtask: eBPF object {} ({size} bytes); oom-tracer embeds its own copy, built by its build.rs",
        obj.display()
    );
    Ok(())
}

/// Builds oom-tracer and stress with a cargo profile (`release`, `dev`)
/// into `target/release/` or `target/debug/`.
fn build(profile: &str) -> anyhow::Result<()> {
    build_with(profile, true)
}

/// Builds oom-tracer and stress; `agent`: with the node agent (the
/// Kubernetes API and the CRI, half the crates of the build).
fn build_with(profile: &str, agent: bool) -> anyhow::Result<()> {
    let bin = setup()?;
    let mut c = cargo();
    c.args(["build", "--package", "oom-tracer", "--package", "stress"])
        .args(["--profile", profile]);
    if !agent {
        c.arg("--no-default-features");
    }
    with_path(&mut c, &bin);
    run(&mut c)
}

/// The habits CI holds the code to: `cargo fmt --check` (nightly rustfmt:
/// rustfmt.toml's import options are unstable) and clippy with every
/// warning an error, on the host crates and on the eBPF crate for its own
/// target. Installs the components where they are missing.
fn lint(bin: &Path) -> anyhow::Result<()> {
    for (toolchain, component) in [
        (NIGHTLY, "rustfmt"),
        ("stable", "clippy"),
        (NIGHTLY, "clippy"),
    ] {
        let installed = output(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            toolchain,
        ]))?;
        if !installed.lines().any(|l| l.starts_with(component)) {
            run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                toolchain,
            ]))?;
        }
    }
    let mut fmt = Command::new("rustup");
    fmt.current_dir(workspace_root())
        .args(["run", NIGHTLY, "cargo", "fmt", "--all", "--check"])
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    run(&mut fmt).context("formatting differs: run `cargo +nightly fmt --all`")?;
    // The host crates, then the demo's build (oom-tracer without the node
    // agent).
    let host: &[&str] = &[
        "--workspace",
        "--exclude",
        "oom-tracer-ebpf",
        "--all-targets",
    ];
    let demo: &[&str] = &["--package", "oom-tracer", "--no-default-features", "--bins"];
    for (targets, what) in [
        (host, "the host crates"),
        (demo, "the build without the agent"),
    ] {
        let mut clippy = cargo();
        clippy
            .arg("clippy")
            .args(targets)
            .args(["--", "-D", "warnings"]);
        with_path(&mut clippy, bin);
        run(&mut clippy)
            .with_context(|| format!("clippy found warnings in {what} (they are errors here)"))?;
    }
    let mut ebpf = ebpf_cargo(bin, "clippy");
    ebpf.args(["--", "-D", "warnings"]);
    run(&mut ebpf).context("clippy found warnings in the eBPF crate (they are errors here)")
}

/// `cargo +nightly <sub>` on the eBPF crate for its own target
/// (`bpfel-unknown-none`, core built from source), as aya builds and lints
/// its eBPF crates; the workspace's host commands exclude it.
fn ebpf_cargo(bin: &Path, sub: &str) -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(workspace_root().join("oom-tracer-ebpf"))
        .args(["run", NIGHTLY, "cargo", sub, "--release", "--bins", "--lib"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                &format!("--cfg=bpf_target_arch=\"{}\"", env::consts::ARCH),
                "-Cdebuginfo=2",
                "-Clink-arg=--btf",
            ]
            .join("\x1f"),
        )
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    with_path(&mut c, bin);
    c
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::BuildEbpf => build_ebpf(),
        Cmd::Lint => lint(&setup()?),
        Cmd::Build => {
            build("release")?;
            eprintln!("xtask: built target/release/oom-tracer and target/release/stress");
            Ok(())
        }
        Cmd::Demo { restarts, no_run } => {
            // Not the release profile: fat LTO and one codegen unit make the
            // binary the image and the bench want, and cost a first try
            // minutes it does not need (docs/building.md). The dev profile
            // also reuses what `cargo xtask` itself compiled, and `test`
            // reuses what the demo compiled. Nor does `run` need the node
            // agent's Kubernetes and CRI clients: half the crates, left out.
            build_with("dev", false)?;
            if no_run {
                eprintln!("xtask: built target/debug/oom-tracer and target/debug/stress");
                return Ok(());
            }
            if !is_root() {
                bail!(
                    "the demo loads eBPF programs and creates memory cgroups: run it as root (sudo -E cargo xtask demo)"
                );
            }
            let tracer = workspace_root().join("target/debug/oom-tracer");
            run(Command::new(tracer).args([
                "run",
                "--memory-limit",
                "50Mi",
                "--backoff-initial",
                "1s",
                "--backoff-max",
                "8s",
                "--max-restarts",
                &restarts.to_string(),
                "--format",
                "pretty",
            ]))
        }
        Cmd::Minikube(cmd) => minikube::run(&workspace_root(), cmd),
        Cmd::Images => images::build(&workspace_root()),
        Cmd::Bench(args) => {
            build("release")?;
            if !is_root() {
                bail!("the benchmark runs the tracer: run it as root");
            }
            bench::bench(&workspace_root(), args)
        }
        Cmd::Test { args } => {
            let bin = setup()?;
            lint(&bin)?;
            // The integration tests run the stress binary next to oom-tracer's.
            let mut c = cargo();
            c.args(["build", "--package", "stress"]);
            with_path(&mut c, &bin);
            run(&mut c)?;
            if is_root() {
                // The DaemonSet test runs the images of deploy/ as they are
                // built for users: target/images/{agent,stress}.tar.
                images::build(&workspace_root())
                    .context("building the images for the DaemonSet test")?;
                // The agent's integration tests drive a private containerd
                // over the CRI. Start it (or repair it) on every run: a
                // socket left from an earlier boot answers nobody.
                start_test_containerd()?;
            } else {
                eprintln!(
                    "xtask: not root: the test containerd cannot start and the privileged \
                     integration tests will fail, naming what they need"
                );
            }
            let mut c = cargo();
            c.args([
                "test",
                "--workspace",
                "--exclude",
                "oom-tracer-ebpf",
                "--no-fail-fast",
            ])
            .args(["--", "--test-threads", "2"])
            .args(&args);
            // The docs' test checks `cargo xtask …` commands against this
            // binary's own --help.
            if let Ok(me) = env::current_exe() {
                c.env("OOM_TRACER_XTASK", me);
            }
            with_path(&mut c, &bin);
            run(&mut c)
        }
    }
}
