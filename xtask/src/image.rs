//! `cargo xtask image`: udstrace's container image, built from the release binary by
//! `xtask/image.sh` (the image test builds its image with the same script), tagged
//! `udstrace:VERSION` and `udstrace:latest`; `--output FILE` also saves it as a tar, to load on
//! another host (`docker load -i FILE`) or a Kubernetes node (`ctr -n k8s.io images import FILE`).

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, output, root, sh};

/// `cargo xtask image` options.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Also save the image (both tags) to this tar file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// The docker client of the user's PATH.
const DOCKER: &str = "docker";

pub(crate) fn run(options: &Options) -> Result<()> {
    if output(Command::new(DOCKER).args(["version", "--format", "{{.Server.Version}}"])).is_none() {
        bail!(
            "docker does not answer: is dockerd running? (`dockerd &` as root; \
             `cargo xtask setup` installs docker.io)"
        );
    }
    sh(cargo().args(["build", "--release", "-p", "udstrace"]))?;
    let bin = root().join("target/release/udstrace");
    let name = format!("udstrace:{}", env!("CARGO_PKG_VERSION"));
    let latest = "udstrace:latest";
    sh(Command::new("/bin/sh")
        .arg(root().join("xtask/image.sh"))
        .arg(&bin)
        .args([name.as_str(), latest])
        .env("DOCKER", DOCKER))?;
    let size =
        output(Command::new(DOCKER).args(["image", "inspect", "--format", "{{.Size}}", &name]))
            .context("docker image inspect")?;
    let bytes: u64 = size.trim().parse().context("image size")?;
    #[allow(clippy::cast_precision_loss)]
    let mib = bytes as f64 / f64::from(1 << 20);
    println!("{name} (also {latest}): {mib:.1} MiB ({bytes} bytes)");
    if let Some(file) = &options.output {
        sh(Command::new(DOCKER)
            .arg("save")
            .arg("-o")
            .arg(file)
            .args([name.as_str(), latest]))?;
        println!("saved to {}", file.display());
    }
    Ok(())
}
