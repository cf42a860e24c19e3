//! `cargo xtask test`: the whole suite, as CI runs it.

use anyhow::Result;

use crate::util::{cargo, require_root, root, sh};

fn run_all() -> Result<()> {
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The eBPF crate builds for the BPF target only (with nightly, through udstrace's
    // build.rs); lint it there.
    sh(cargo().args(["build", "-p", "udstrace"]))?;
    // Unit tests of every crate but the kernel one.
    sh(cargo().args([
        "test",
        "-p",
        "udstrace",
        "-p",
        "udstrace-common",
        "-p",
        "xtask",
    ]))?;
    // Integration tests: real programs, real sockets. One at a time: each captures this
    // process's traffic, and a test's bulk traffic would flood another's capture.
    let bin = root().join("target/debug/udstrace");
    sh(cargo().env("UDSTRACE_BIN", bin).args([
        "test",
        "-p",
        "udstrace-tests",
        "--",
        "--test-threads=1",
    ]))
}

pub fn run() -> Result<()> {
    require_root("cargo xtask test")?;
    run_all()
}
