//! Builds the kernel programs (`udstrace-ebpf`) with the nightly toolchain and bpf-linker, and
//! leaves the object in `OUT_DIR` for `include_bytes_aligned!`; names the source revision for
//! `--version` (`UDSTRACE_REVISION`).

use anyhow::{anyhow, Context as _};
use aya_build::{build_ebpf, Package, Toolchain};

/// `$UDSTRACE_REVISION` when a package build sets it, else `git describe` of the source tree,
/// else `unknown` (a source tarball).
fn revision(dir: &std::path::Path) -> String {
    println!("cargo:rerun-if-env-changed=UDSTRACE_REVISION");
    if let Ok(r) = std::env::var("UDSTRACE_REVISION") {
        return r;
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    // Built again when HEAD moves: a commit, a checkout.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"])
            .and_then(|r| git(&["rev-parse", "--git-path", &r])),
    ]
    .into_iter()
    .flatten()
    {
        println!("cargo:rerun-if-changed={}", dir.join(path).display());
    }
    git(&["describe", "--always", "--tags"]).unwrap_or_else(|| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    let metadata =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["locate-project", "--workspace", "--message-format=plain"])
            .output()
            .context("cargo locate-project")?;
    let manifest = String::from_utf8(metadata.stdout).context("workspace path is not UTF-8")?;
    let workspace = std::path::Path::new(manifest.trim())
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?;
    println!("cargo:rustc-env=UDSTRACE_REVISION={}", revision(workspace));
    let root = workspace.join("udstrace-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("eBPF crate path is not UTF-8"))?;
    build_ebpf(
        [Package {
            name: "udstrace-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}
