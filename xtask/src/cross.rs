//! `cargo xtask cross`: udstrace for another architecture, built on this machine.
//!
//! The kernel programs are the same object on every architecture (little-endian BPF, built
//! by udstrace's build script on the host); only the userspace binary is cross-compiled, by
//! the target's Rust standard library (`rustup target add`) and Debian's cross linker
//! (`gcc-aarch64-linux-gnu`, named in `.cargo/config.toml`). What differs between the
//! architectures at run time comes from udstrace's table (`udstrace/src/kernel/arch.rs`).

use std::path::PathBuf;

use anyhow::{ensure, Result};

use crate::util::{cargo, root, sh};

/// An architecture udstrace is cross-built for.
pub(crate) struct Target {
    /// As `--arch` and Debian name it.
    pub(crate) debian: &'static str,
    /// The Rust target.
    pub(crate) triple: &'static str,
}

pub(crate) const TARGETS: &[Target] = &[Target {
    debian: "arm64",
    triple: "aarch64-unknown-linux-gnu",
}];

/// `cargo xtask cross` options.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// The architecture (Debian's name).
    #[arg(long, value_name = "ARCH", default_value = "arm64", value_parser = ["arm64"])]
    arch: String,
    /// The debug build instead of the release one.
    #[arg(long)]
    debug: bool,
}

pub(crate) fn run(opts: &Options) -> Result<()> {
    let target = target(&opts.arch)?;
    let binary = build(target, opts.debug)?;
    println!("{}", binary.display());
    Ok(())
}

/// The table's entry for `arch`.
pub(crate) fn target(arch: &str) -> Result<&'static Target> {
    TARGETS
        .iter()
        .find(|t| t.debian == arch)
        .ok_or_else(|| anyhow::anyhow!("no cross target for {arch}"))
}

/// Builds udstrace for `target`; the binary's path.
pub(crate) fn build(target: &Target, debug: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "-p", "udstrace", "--target", target.triple]);
    if !debug {
        cmd.arg("--release");
    }
    sh(&mut cmd)?;
    let binary = root()
        .join("target")
        .join(target.triple)
        .join(if debug { "debug" } else { "release" })
        .join("udstrace");
    ensure!(binary.exists(), "{} was not built", binary.display());
    Ok(binary)
}
