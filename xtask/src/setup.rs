//! `cargo xtask setup`: everything a fresh Debian 12 (x86_64) machine needs, idempotent.

use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{output, require_root, sh};

/// Debian packages: tshark to check captures; real clients and servers for the tests (curl and
/// python3 for HTTP, postgresql for psql and its server, xvfb and x11-utils for X11);
/// util-linux for setpriv and runuser; iproute2 for `ss` (checks `udstrace ls`); bpftool to
/// inspect programs; qemu-system-x86, busybox-static and xz-utils to boot other kernels
/// (`cargo xtask vm-test`); docker.io (dockerd, containerd, runc) for the container tests,
/// which start dockerd themselves.
const APT_PACKAGES: &[&str] = &[
    "tshark",
    "curl",
    "python3",
    "postgresql",
    "xvfb",
    "x11-utils",
    "util-linux",
    "iproute2",
    "bpftool",
    "ca-certificates",
    "qemu-system-x86",
    "busybox-static",
    "xz-utils",
    "docker.io",
];

/// The bpf-linker release that works with the toolchains here (see docs/DESIGN.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

pub(crate) fn run() -> Result<()> {
    require_root("setup")?;
    apt()?;
    rust()?;
    bpf_linker()?;
    cargo_fuzz()?;
    eprintln!("setup done");
    Ok(())
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // tshark asks whether non-root users may capture: answer no, without a prompt.
    let mut debconf = Command::new("debconf-set-selections");
    debconf.stdin(std::process::Stdio::piped());
    let mut child = debconf.spawn().context("debconf-set-selections")?;
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().context("debconf stdin")?;
        stdin.write_all(b"wireshark-common wireshark-common/install-setuid boolean false\n")?;
    }
    child.wait()?;
    sh(Command::new("apt-get").arg("update"))?;
    sh(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing))
}

fn rust() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        sh(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    // rust-src: the kernel programs are built with -Z build-std=core; clippy: they are linted
    // for their own target (`cargo xtask test`).
    sh(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "clippy",
        "--toolchain",
        "nightly",
    ]))
}

/// cargo-fuzz, for the fuzz targets (`cargo xtask test` runs each briefly), unless installed.
fn cargo_fuzz() -> Result<()> {
    if output(Command::new("cargo").args(["fuzz", "--version"])).is_some() {
        return Ok(());
    }
    sh(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
}

/// bpf-linker, built against the nightly toolchain's own LLVM (Debian 12's LLVM is too old).
fn bpf_linker() -> Result<()> {
    let installed = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if installed.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    let sysroot =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
            .context("nightly rustc")?
            .trim()
            .to_string();
    let lib = std::path::Path::new(&sysroot).join("lib");
    let llvm_so = std::fs::read_dir(&lib)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so") || n.starts_with("libLLVM-"))
        .context("the nightly toolchain has no libLLVM")?;
    let version = output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))
        .context("rustc -vV")?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("no LLVM version in rustc -vV")?
        .to_string();
    let lib = lib.display();
    let rustflags =
        format!("-C link-arg=-L{lib} -C link-arg=-l:{llvm_so} -C link-arg=-Wl,-rpath,{lib}");
    sh(Command::new("cargo")
        .env("RUSTFLAGS", rustflags)
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{major},no-llvm-linking")]))
}
