//! `cargo xtask deb`: a Debian package of udstrace, laid out here and built with dpkg-deb (no
//! other tool): the binary, its manual page and shell completions (`udstrace generate`), the
//! systemd unit (`dist/udstrace.service`), Wireshark's Lua plugin and extcap link where
//! Debian's Wireshark looks for them (`tshark -G folders`: the global Lua plugins folder and
//! the extcap path under /usr/lib/MULTIARCH/wireshark), the copyright and the changelog.

use std::{
    fmt::Write as _,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, output, root, sh};

#[derive(clap::Args)]
pub(crate) struct Options {
    /// Package this udstrace binary as it is (for the tests: a debug build) instead of
    /// building the release binary.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Folder the .deb is written to (default: target/deb).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// The Debian revision of the package's version.
const DEBIAN_REVISION: &str = "1";

pub(crate) fn run(options: &Options) -> Result<()> {
    let deb = build(options)?;
    println!("{}", deb.display());
    Ok(())
}

fn build(options: &Options) -> Result<PathBuf> {
    let binary = if let Some(b) = &options.binary {
        b.clone()
    } else {
        sh(cargo().args(["build", "--release", "-p", "udstrace"]))?;
        root().join("target/release/udstrace")
    };
    if !binary.is_file() {
        bail!("{}: no such binary", binary.display());
    }
    let arch = output(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture")?
        .trim()
        .to_string();
    let multiarch = multiarch(&arch)?;
    let version = format!("{}-{DEBIAN_REVISION}", env!("CARGO_PKG_VERSION"));
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| root().join("target/deb"));
    let stage = out.join(format!("udstrace_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| stage.display().to_string())?;
    }

    // The binary, without its debugging information.
    let sbin = stage.join("usr/sbin/udstrace");
    put(&binary, &sbin, 0o755)?;
    sh(Command::new("strip").arg("--strip-debug").arg(&sbin))?;

    let generated = stage.join("generated");
    fs::create_dir_all(&generated)?;
    sh(Command::new(&sbin).arg("generate").arg(&generated))?;
    let man = stage.join("usr/share/man/man8/udstrace.8");
    put(&generated.join("udstrace.8"), &man, 0o644)?;
    sh(Command::new("gzip").args(["-9n"]).arg(&man))?;
    put(
        &generated.join("udstrace.bash"),
        &stage.join("usr/share/bash-completion/completions/udstrace"),
        0o644,
    )?;
    put(
        &generated.join("_udstrace"),
        &stage.join("usr/share/zsh/vendor-completions/_udstrace"),
        0o644,
    )?;
    put(
        &generated.join("udstrace.fish"),
        &stage.join("usr/share/fish/vendor_completions.d/udstrace.fish"),
        0o644,
    )?;
    let wireshark = stage.join(format!("usr/lib/{multiarch}/wireshark"));
    put(
        &generated.join("udstrace.lua"),
        &wireshark.join("plugins/udstrace.lua"),
        0o644,
    )?;
    fs::remove_dir_all(&generated)?;
    fs::create_dir_all(wireshark.join("extcap"))?;
    std::os::unix::fs::symlink("/usr/sbin/udstrace", wireshark.join("extcap/udstrace"))?;

    put(
        &root().join("dist/udstrace.service"),
        &stage.join("lib/systemd/system/udstrace.service"),
        0o644,
    )?;
    let doc = stage.join("usr/share/doc/udstrace");
    write(&doc.join("copyright"), &copyright(), 0o644)?;
    let changelog = doc.join("changelog.Debian");
    write(&changelog, &changelog_text(&version), 0o644)?;
    sh(Command::new("gzip").args(["-9n"]).arg(&changelog))?;

    let debian = stage.join("DEBIAN");
    write(
        &debian.join("control"),
        &control(&version, &arch, &sbin, &stage)?,
        0o644,
    )?;
    write(&debian.join("postinst"), POSTINST, 0o755)?;
    write(&debian.join("prerm"), PRERM, 0o755)?;
    write(&debian.join("postrm"), POSTRM, 0o755)?;
    write(&debian.join("md5sums"), &md5sums(&stage)?, 0o644)?;

    let deb = out.join(format!("udstrace_{version}_{arch}.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    fs::remove_dir_all(&stage)?;
    Ok(deb)
}

/// Debian's multiarch triplet for `arch` (where Wireshark's plugins are).
fn multiarch(arch: &str) -> Result<&'static str> {
    Ok(match arch {
        "amd64" => "x86_64-linux-gnu",
        "arm64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        other => bail!("no multiarch folder known for architecture {other}"),
    })
}

/// Copies `from` to `to` (folders made) with `mode`.
fn put(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = fs::read(from).with_context(|| from.display().to_string())?;
    write_bytes(to, &bytes, mode)
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    write_bytes(to, text.as_bytes(), mode)
}

fn write_bytes(to: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = to.parent().context("a file in a folder")?;
    fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    fs::write(to, bytes).with_context(|| to.display().to_string())?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The control file: Depends from the libraries the binary needs, libc6 at the newest symbol
/// version it uses.
fn control(version: &str, arch: &str, binary: &Path, stage: &Path) -> Result<String> {
    let dynamic = output(Command::new("objdump").arg("-T").arg(binary)).context("objdump -T")?;
    let glibc = dynamic
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let parts: Vec<u32> = v
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some(parts)
        })
        .max()
        .context("the binary uses no versioned glibc symbol")?;
    let glibc = glibc
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let needed = output(Command::new("objdump").arg("-p").arg(binary)).context("objdump -p")?;
    let mut depends = vec![format!("libc6 (>= {glibc})")];
    if needed.contains("libgcc_s.so.1") {
        depends.push("libgcc-s1".into());
    }
    let size_kib = output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(stage),
    )
    .and_then(|s| s.split_whitespace().next().map(str::to_string))
    .context("du")?;
    Ok(format!(
        "Package: udstrace\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: udstrace developers <udstrace@packages.invalid>\n\
         Installed-Size: {size_kib}\n\
         Depends: {}\n\
         Suggests: tshark | wireshark\n\
         Section: net\n\
         Priority: optional\n\
         Description: tcpdump for Unix domain sockets\n \
         udstrace captures what processes send over AF_UNIX sockets, systemwide or for\n \
         chosen processes, containers or socket paths, with eBPF, and writes pcapng for\n \
         Wireshark or prints it as text. Includes a systemd unit capturing to a ring of\n \
         files (not enabled), Wireshark's extcap interface and a Lua plugin for its fields.\n",
        depends.join(", ")
    ))
}

fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
     Upstream-Name: udstrace\n\n\
     Files: *\n\
     Copyright: udstrace developers\n\
     License: MIT or Apache-2.0\n \
     udstrace may be used under the terms of the MIT license or of the Apache License,\n \
     Version 2.0, at your option. The Apache License is in\n \
     /usr/share/common-licenses/Apache-2.0.\n"
        .to_string()
}

fn changelog_text(version: &str) -> String {
    let date = output(Command::new("date").arg("-R"))
        .map(|d| d.trim().to_string())
        .unwrap_or_default();
    format!(
        "udstrace ({version}) unstable; urgency=medium\n\n  * Package built by `cargo xtask deb`.\n\n \
         -- udstrace developers <udstrace@packages.invalid>  {date}\n"
    )
}

/// `md5sum` of every file but DEBIAN's, paths relative to the root.
fn md5sums(stage: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect(stage, stage, &mut files)?;
    files.sort();
    let mut text = String::new();
    for rel in files {
        let sum = output(Command::new("md5sum").arg(stage.join(&rel))).context("md5sum")?;
        let sum = sum.split_whitespace().next().context("md5sum output")?;
        let _ = writeln!(text, "{sum}  {}", rel.display());
    }
    Ok(text)
}

fn collect(stage: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if path != stage.join("DEBIAN") {
                collect(stage, &path, files)?;
            }
        } else if meta.is_file() {
            files.push(path.strip_prefix(stage)?.to_path_buf());
        }
    }
    Ok(())
}

/// After installing: systemd learns of the unit (it is not enabled: capturing everything is
/// the administrator's choice, `systemctl enable --now udstrace`).
const POSTINST: &str = "#!/bin/sh\nset -e\n\
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n";

/// Before removing: the service stops.
const PRERM: &str = "#!/bin/sh\nset -e\n\
if [ -d /run/systemd/system ] && [ \"$1\" = remove ]; then\n  \
systemctl stop udstrace.service || true\nfi\n";

/// After removing: systemd forgets the unit; a purge also removes the captures in
/// /var/lib/udstrace and the unit's enablement.
const POSTRM: &str = "#!/bin/sh\nset -e\n\
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n\
if [ \"$1\" = purge ]; then\n  \
rm -rf /var/lib/udstrace\n  \
rm -f /etc/systemd/system/multi-user.target.wants/udstrace.service\n\
fi\n";
