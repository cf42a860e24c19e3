//! `cargo xtask demo`: a real capture. A Python HTTP server listens on a Unix socket, curl
//! asks it twice, udstrace captures the machine's Unix socket traffic meanwhile, and the
//! capture is shown by udstrace itself and by tshark, which decodes the HTTP.

use std::{
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, require_root, root, sh};

/// The HTTP server the integration tests use too.
const SERVER: &str = include_str!("../../tests/fixtures/unix_http_server.py");

pub(crate) fn run() -> Result<()> {
    require_root("cargo xtask demo")?;
    sh(cargo().args(["build", "--release", "-p", "udstrace"]))?;
    let bin = root().join("target/release/udstrace");
    let capture = root().join("target/demo.pcapng");
    let socket = Path::new("/tmp/udstrace-demo.sock");

    let mut server = Command::new("python3")
        .args(["-c", SERVER])
        .arg(socket)
        .spawn()
        .context("python3")?;
    let start = Instant::now();
    while !socket.exists() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = server.kill();
            bail!("the demo server did not start");
        }
        thread::sleep(Duration::from_millis(50));
    }

    eprintln!("+ {} -w {}", bin.display(), capture.display());
    let mut udstrace = Command::new(&bin)
        .arg("-w")
        .arg(&capture)
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = udstrace.stderr.take().context("stderr")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    for line in lines.by_ref() {
        let line = line?;
        eprintln!("{line}");
        if line.starts_with("listening on") {
            break;
        }
    }
    let curl = (|| -> Result<()> {
        for path in ["/hello", "/again"] {
            sh(Command::new("curl")
                .args(["-sS", "--unix-socket"])
                .arg(socket)
                .arg(format!("http://localhost{path}")))?;
        }
        Ok(())
    })();
    thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own children.
    unsafe {
        kill(i32::try_from(udstrace.id())?, 2);
    }
    for line in lines {
        eprintln!("{}", line?);
    }
    let status = udstrace.wait()?;
    let _ = server.kill();
    let _ = std::fs::remove_file(socket);
    curl?;
    if !status.success() {
        bail!("udstrace failed ({status})");
    }

    eprintln!("\nThe capture, as udstrace prints it (curl's and the server's messages):");
    let text = Command::new(&bin).arg("-r").arg(&capture).output()?;
    for line in String::from_utf8_lossy(&text.stdout)
        .lines()
        .filter(|l| l.contains("curl[") || l.contains("python3["))
    {
        println!("{line}");
    }
    eprintln!("\nThe same file in tshark:");
    sh(Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&capture)
        .args(["-Y", "http"]))
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
