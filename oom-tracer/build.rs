//! Builds the eBPF programs (crate `oom-tracer-ebpf`) with aya-build and
//! leaves the object in OUT_DIR, where `src/bpf/loader.rs` embeds it.
//!
//! Needs the nightly toolchain with rust-src and `bpf-linker`:
//! `cargo xtask build-ebpf` installs both. A bpf-linker installed by xtask
//! (in its tools cache) is found without being on PATH.
use std::{env, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn tools_dir() -> Option<PathBuf> {
    if let Some(d) = env::var_os("OOM_TRACER_TOOLS_DIR") {
        return Some(PathBuf::from(d));
    }
    let cache = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("oom-tracer"))
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=OOM_TRACER_TOOLS_DIR");
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = meta
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "oom-tracer-ebpf")
        .ok_or_else(|| anyhow!("package oom-tracer-ebpf not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("manifest path has no parent"))?
        .as_str()
        .to_owned();

    if let Some(bin) = tools_dir().map(|d| d.join("bpf-linker").join("bin"))
        && bin.join("bpf-linker").exists()
    {
        let path = env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![bin];
        paths.extend(env::split_paths(&path));
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("PATH", env::join_paths(paths)?) };
    }

    aya_build::build_ebpf(
        [Package {
            name: "oom-tracer-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context(
        "building the eBPF programs failed; `cargo xtask build-ebpf` installs the nightly \
         rust-src component and bpf-linker they need",
    )
}
