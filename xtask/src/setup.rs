//! `cargo xtask setup`: everything a fresh Debian 12 (x86_64) machine needs, idempotent.

use std::{io::Write, os::unix::fs::OpenOptionsExt, process::Command};

use anyhow::{bail, Context, Result};

use crate::util::{output, require_root, sh};

/// Debian packages: tshark to check captures; real clients and servers for the tests (curl and
/// python3 for HTTP, postgresql for psql and its server, xvfb and x11-utils for X11);
/// util-linux for setpriv and runuser; iproute2 for `ss` (checks `udstrace ls`); bpftool to
/// inspect programs; qemu-system-x86, busybox-static and xz-utils to boot other kernels
/// (`cargo xtask vm-test`); docker.io (dockerd, containerd, runc) for the container tests,
/// which start dockerd themselves; dbus (dbus-daemon, dbus-send, dbus-monitor) and systemd
/// (busctl) for D-Bus; containerd (its `ctr`), redis-server, redis-tools,
/// mariadb-server, mariadb-client and memcached for the protocol tests, which start their
/// own servers; gcc-aarch64-linux-gnu and libc6-dev-arm64-cross to link udstrace for arm64
/// (`cargo xtask cross`), qemu-system-arm to boot arm64 kernels.
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
    "dbus",
    "dbus-bin",
    "systemd",
    "containerd",
    "redis-server",
    "redis-tools",
    "mariadb-server",
    "mariadb-client",
    "memcached",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "qemu-system-arm",
];

/// The bpf-linker release that works with the toolchains here (see docs/DESIGN.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

pub(crate) fn run() -> Result<()> {
    require_root("setup")?;
    let skipped = apt()?;
    rust()?;
    bpf_linker()?;
    cargo_fuzz()?;
    if !skipped.is_empty() {
        bail!(
            "setup incomplete: not installed, as each would remove installed packages: {}",
            skipped.join("; ")
        );
    }
    eprintln!("setup done");
    Ok(())
}

/// Debian 12's backports suite. A machine may come with a package from there (qemu-utils 10
/// beside bookworm's qemu 7.2); bookworm's version of a package that depends on it would
/// replace it, backports' version installs beside it.
const BACKPORTS: &str = "bookworm-backports";

/// The apt source setup adds for [`BACKPORTS`] when the machine has none (apt gives a
/// backports suite a low priority: nothing else is taken from it unless asked for).
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/udstrace-bookworm-backports.sources";

/// The installed packages that `apt-get install` of `packages` (from `release`, or the default
/// one) would remove, as its simulation (`-s`) says: `name [version]` each.
fn removals(packages: &[&str], release: Option<&str>) -> Result<Vec<String>> {
    let out = apt_get_install(&["-s"], packages, release)
        .output()
        .context("apt-get install -s")?;
    if !out.status.success() {
        bail!(
            "apt-get cannot install {}: {}",
            packages.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(removed(&String::from_utf8_lossy(&out.stdout)))
}

/// The `Remv NAME [VERSION]` lines of an apt-get simulation, as `NAME [VERSION]`.
fn removed(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .map(str::to_string)
        .collect()
}

/// True when each `name [version]` of `removed` was installed from a backports suite.
fn all_from_backports(removed: &[String]) -> bool {
    !removed.is_empty() && removed.iter().all(|r| r.contains("~bpo"))
}

/// Whether [`BACKPORTS`] is one of apt's sources.
fn backports_listed() -> bool {
    output(Command::new("apt-cache").arg("policy")).is_some_and(|p| p.contains(BACKPORTS))
}

/// Makes [`BACKPORTS`] one of apt's sources, unless it is one already.
fn backports_source() -> Result<()> {
    if backports_listed() {
        return Ok(());
    }
    // create_new: never through a symlink, never over a file that is there.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(BACKPORTS_SOURCE)
        .with_context(|| format!("creating {BACKPORTS_SOURCE}"))?;
    write!(
        file,
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {BACKPORTS}\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )?;
    eprintln!("setup: added {BACKPORTS_SOURCE}");
    sh(Command::new("apt-get").arg("update"))
}

/// True when `package` from [`BACKPORTS`] (added as a source if need be) removes nothing.
fn installs_from_backports(package: &str) -> Result<bool> {
    backports_source()?;
    Ok(removals(&[package], Some(BACKPORTS))?.is_empty())
}

/// Installs the packages missing; never removes one the machine has. A package whose
/// installation would remove packages installed from backports (qemu-utils from backports
/// against bookworm's qemu-system-x86) is installed from backports, when that removes nothing;
/// any other that would remove a package is left out and returned, with what it would
/// remove.
fn apt() -> Result<Vec<String>> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    // tshark asks whether non-root users may capture: answer no, without a prompt.
    let mut debconf = Command::new("debconf-set-selections");
    debconf.stdin(std::process::Stdio::piped());
    let mut child = debconf.spawn().context("debconf-set-selections")?;
    {
        let stdin = child.stdin.as_mut().context("debconf stdin")?;
        stdin.write_all(b"wireshark-common wireshark-common/install-setuid boolean false\n")?;
    }
    child.wait()?;
    sh(Command::new("apt-get").arg("update"))?;
    let mut skipped = Vec::new();
    let mut install = Vec::new();
    let mut backported = Vec::new();
    for package in missing {
        let simulated = removals(&[package], None);
        let try_backports = match &simulated {
            Ok(removes) if removes.is_empty() => {
                install.push(package);
                continue;
            }
            Ok(removes) => all_from_backports(removes),
            // Once backports is a source (added for an earlier package), apt's resolver may
            // refuse bookworm's version outright (between the two qemu-system-common).
            Err(_) => backports_listed(),
        };
        if try_backports && installs_from_backports(package)? {
            eprintln!("setup: {package} from {BACKPORTS}, beside the packages from there");
            backported.push(package);
            continue;
        }
        let removes = simulated?;
        eprintln!(
            "setup: not installing {package}: it would remove {}",
            removes.join(", ")
        );
        skipped.push(format!("{package} (would remove {})", removes.join(", ")));
    }
    if !install.is_empty() && !removals(&install, None)?.is_empty() {
        // Each alone removes nothing, together they would: install them one by one.
        for package in &install {
            apt_install(&[package], None)?;
        }
    } else if !install.is_empty() {
        apt_install(&install, None)?;
    }
    for package in backported {
        apt_install(&[package], Some(BACKPORTS))?;
    }
    Ok(skipped)
}

/// `apt-get install` (from `release`, or the default one), told to fail rather than remove
/// anything.
fn apt_install(packages: &[&str], release: Option<&str>) -> Result<()> {
    sh(&mut apt_get_install(
        &["-y", "--no-remove"],
        packages,
        release,
    ))
}

/// `apt-get install --no-install-recommends` with `flags`, of `packages` from `release` (or
/// the default one), without questions.
fn apt_get_install(flags: &[&str], packages: &[&str], release: Option<&str>) -> Command {
    let mut apt = Command::new("apt-get");
    apt.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "--no-install-recommends"])
        .args(flags);
    if let Some(release) = release {
        apt.args(["-t", release]);
    }
    apt.args(packages);
    apt
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
    // The standard libraries of the cross targets (`cargo xtask cross`).
    for target in crate::cross::TARGETS {
        sh(Command::new("rustup").args(["target", "add", target.triple]))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_read_from_the_simulation() {
        let text = "NOTE: This is only a simulation!\nRemv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]\n\
                    Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])\n";
        assert_eq!(
            removed(text),
            ["qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]"]
        );
        assert!(removed("Inst curl (7.88)\nConf curl (7.88)\n").is_empty());
    }

    #[test]
    fn backports_only_when_each_removal_is_from_backports() {
        let bpo = "qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]".to_string();
        let plain = "systemd-timesyncd [252.39-1~deb12u1]".to_string();
        assert!(all_from_backports(std::slice::from_ref(&bpo)));
        assert!(!all_from_backports(&[bpo, plain]));
        assert!(!all_from_backports(&[]));
    }

    /// A real simulation (nothing is installed): chrony replaces systemd-timesyncd on Debian
    /// 12, and an installed package removes nothing.
    #[test]
    fn removals_of_a_real_conflict() {
        if Command::new("apt-get").arg("-v").output().is_err()
            || output(Command::new("dpkg-query").args(["-W", "-f=${Status}", "systemd-timesyncd"]))
                .is_none_or(|s| !s.contains("install ok installed"))
        {
            eprintln!("no apt-get or no systemd-timesyncd here: skipped");
            return;
        }
        let removes = removals(&["chrony"], None).unwrap();
        assert!(
            removes.iter().any(|r| r.starts_with("systemd-timesyncd [")),
            "{removes:?}"
        );
        assert!(removals(&["util-linux"], None).unwrap().is_empty());
    }
}
