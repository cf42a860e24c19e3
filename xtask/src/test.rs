//! `cargo xtask test`: the whole suite, as CI runs it.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, require_root, root, sh, show};

/// Tests passed and failed, summed over cargo test runs.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Runs a `cargo test` command, echoing its output and counting its results.
    fn cargo_test(&mut self, cmd: &mut Command) -> Result<()> {
        eprintln!("+ {}", show(cmd));
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| show(cmd))?;
        for line in BufReader::new(child.stdout.take().context("stdout")?).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split(['.', ';']) {
                    let mut words = part.split_whitespace();
                    if let (Some(n), Some(what)) = (words.next(), words.next()) {
                        match (n.parse::<u64>(), what) {
                            (Ok(n), "passed") => self.passed += n,
                            (Ok(n), "failed") => self.failed += n,
                            _ => {}
                        }
                    }
                }
            }
        }
        let status = child.wait()?;
        if !status.success() {
            println!("{} passed, {} failed", self.passed, self.failed.max(1));
            bail!("{} failed ({status})", show(cmd));
        }
        Ok(())
    }
}

/// The fuzz targets (fuzz/fuzz_targets), each run briefly from its corpus.
pub(crate) const FUZZ_TARGETS: [&str; 3] = ["record", "comment", "read"];

/// Where the fuzz targets are built: outside the clone, so that the next clean clone on the same
/// machine rebuilds only udstrace itself, not every dependency with AddressSanitizer (several
/// minutes), as the kernels of vm-test are kept in /var/cache.
const FUZZ_TARGET_DIR: &str = "/var/cache/udstrace-fuzz/target";

/// Seconds each fuzz target runs in the suite.
const FUZZ_SECONDS: u64 = 10;

/// Runs each fuzz target for `seconds` from its corpus in fuzz/corpus (new inputs it finds go
/// to a scratch folder, not the repository's corpus); a crash fails the suite and leaves its
/// input in fuzz/artifacts.
pub(crate) fn fuzz(seconds: u64) -> Result<()> {
    let scratch = std::env::temp_dir().join("udstrace-fuzz-corpus");
    for target in FUZZ_TARGETS {
        let found = scratch.join(target);
        std::fs::create_dir_all(&found)?;
        let corpus = root().join("fuzz/corpus").join(target);
        sh(Command::new("rustup")
            .current_dir(root().join("fuzz"))
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .args(["run", "nightly", "cargo", "fuzz", "run", "-O", target])
            .arg("--target-dir")
            .arg(FUZZ_TARGET_DIR)
            .arg(&found)
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-print_final_stats=1",
            ]))?;
    }
    Ok(())
}

pub(crate) fn run(no_vm: bool) -> Result<()> {
    require_root("cargo xtask test")?;
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The kernel programs (not a default member), for the target and toolchain they are built
    // with (as aya-build does in udstrace's build.rs).
    sh(Command::new("rustup")
        .current_dir(root())
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .args(["run", "nightly", "cargo", "clippy", "-p", "udstrace-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"]))?;
    // Builds the kernel programs too (nightly, bpf-linker), through udstrace's build.rs.
    sh(cargo().args(["build", "-p", "udstrace"]))?;
    let mut tally = Tally::default();
    // Unit tests of every crate but the kernel one.
    tally.cargo_test(cargo().args([
        "test",
        "-p",
        "udstrace",
        "-p",
        "udstrace-common",
        "-p",
        "xtask",
    ]))?;
    // Integration tests: real programs, real sockets. One at a time: each captures this
    // process's traffic, and one test's bulk traffic would flood another's capture.
    let bin = root().join("target/debug/udstrace");
    tally.cargo_test(cargo().env("UDSTRACE_BIN", bin).args([
        "test",
        "-p",
        "udstrace-tests",
        "--",
        "--test-threads=1",
    ]))?;
    fuzz(FUZZ_SECONDS)?;
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if no_vm {
        return Ok(());
    }
    // The same capture tests on other kernels, with every backend each supports.
    crate::vm::run(&crate::vm::Options::default())
}
