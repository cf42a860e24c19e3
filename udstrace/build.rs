//! Builds the kernel programs (`udstrace-ebpf`) with the nightly toolchain and bpf-linker, and
//! leaves the object in `OUT_DIR` for `include_bytes_aligned!`.

use anyhow::{anyhow, Context as _};
use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["locate-project", "--workspace", "--message-format=plain"])
            .output()
            .context("cargo locate-project")?;
    let manifest = String::from_utf8(metadata.stdout).context("workspace path is not UTF-8")?;
    let root = std::path::Path::new(manifest.trim())
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?
        .join("udstrace-ebpf");
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
