//! The Debian package (`cargo xtask deb`, here from the binary under test rather than a
//! release build): `dpkg -i` installs every file where Debian's tools look for it (tshark
//! loads the Lua plugin and lists the extcap interface, `man -w` finds the page, systemd
//! verifies the unit with it), the installed `udstrace --version` names its revision;
//! `apt-get remove` then `apt-get purge` leave nothing of it.
//!
//! This installs into the real system: it runs only where no udstrace package or file is
//! there already, and purges the package whatever happens.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use udstrace_tests::{udstrace_bin, TempDir};

/// Every file the package installs (the unit, the binary, Wireshark's, the docs).
const FILES: &[&str] = &[
    "/usr/sbin/udstrace",
    "/lib/systemd/system/udstrace.service",
    "/usr/share/man/man8/udstrace.8.gz",
    "/usr/share/bash-completion/completions/udstrace",
    "/usr/share/zsh/vendor-completions/_udstrace",
    "/usr/share/fish/vendor_completions.d/udstrace.fish",
    "/usr/lib/x86_64-linux-gnu/wireshark/plugins/udstrace.lua",
    "/usr/lib/x86_64-linux-gnu/wireshark/extcap/udstrace",
    "/usr/share/doc/udstrace/copyright",
    "/usr/share/doc/udstrace/changelog.Debian.gz",
];

/// Where the service keeps its captures (removed by a purge).
const STATE: &str = "/var/lib/udstrace";

fn exists(path: &str) -> bool {
    Path::new(path).symlink_metadata().is_ok()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package's state as dpkg knows it (`install ok installed`, `deinstall ok
/// config-files`), or `None` when dpkg does not know it.
fn dpkg_status() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "udstrace"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !status.is_empty() && status != "unknown ok not-installed")
        .then_some(status)
}

/// Purges the package when the test ends, passed or not.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "udstrace"]).output();
    }
}

#[test]
fn deb_installs_and_removes_cleanly() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!("no dpkg here: skipped");
        return;
    }
    // The machine as it was: nothing of udstrace installed.
    assert_eq!(
        dpkg_status(),
        None,
        "a udstrace package is installed already"
    );
    for f in FILES.iter().chain(&[STATE]) {
        assert!(!exists(f), "{f} exists before the test");
    }

    let dir = TempDir::new("package");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let deb = run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args(["run", "-q", "-p", "xtask", "--", "deb", "--binary"])
            .arg(udstrace_bin())
            .arg("--out")
            .arg(&dir.0),
    );
    // Its last line (the lines before are the files `udstrace generate` wrote).
    let deb = PathBuf::from(deb.lines().last().unwrap_or_default());
    assert!(deb.is_file(), "{}", deb.display());

    let _purge = Purge;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(dpkg_status().as_deref(), Some("install ok installed"));
    for f in FILES {
        assert!(exists(f), "{f} was not installed");
    }
    let listed = run(Command::new("dpkg").args(["-L", "udstrace"]));
    for f in FILES {
        assert!(listed.lines().any(|l| l == *f), "{f} not in dpkg -L");
    }

    let version = run(Command::new("/usr/sbin/udstrace").arg("--version"));
    let version = version.trim();
    assert!(
        version.starts_with(&format!("udstrace {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(!version.contains("(unknown)"), "{version}");

    // Wireshark finds both halves where Debian's tshark looks.
    let plugins = run(Command::new("tshark").args(["-G", "plugins"]));
    assert!(
        plugins.lines().any(|l| l.contains("udstrace.lua")),
        "{plugins}"
    );
    let interfaces = run(Command::new("tshark").arg("-D"));
    assert!(
        interfaces.lines().any(|l| l.contains(". udstrace")),
        "{interfaces}"
    );
    if Command::new("man").arg("--version").output().is_ok() {
        let page = run(Command::new("man").args(["-w", "8", "udstrace"]));
        assert_eq!(page.trim(), "/usr/share/man/man8/udstrace.8.gz");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        // Documentation=man:udstrace(8) resolves now.
        run(Command::new("systemd-analyze")
            .arg("verify")
            .arg("/lib/systemd/system/udstrace.service"));
    }

    // The service's captures, as it would leave them.
    std::fs::create_dir(STATE).unwrap();
    std::fs::write(Path::new(STATE).join("udstrace.pcapng00"), b"x").unwrap();

    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["remove", "-y", "udstrace"]));
    for f in FILES {
        assert!(!exists(f), "{f} is left after apt-get remove");
    }
    assert!(
        exists(STATE),
        "a remove keeps the captures; a purge removes them"
    );
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["purge", "-y", "udstrace"]));
    assert_eq!(dpkg_status(), None);
    for f in FILES.iter().chain(&[STATE]) {
        assert!(!exists(f), "{f} is left after apt-get purge");
    }
    assert!(!exists("/usr/share/doc/udstrace"), "its doc folder is left");
}
