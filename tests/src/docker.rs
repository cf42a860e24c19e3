//! A real dockerd for the container tests: Debian's docker.io, started here when it is not
//! running (and left running); an image with nothing in it; a Unix socket server in a
//! container.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::TempDir;

/// Debian's docker client (`/usr/local/bin` may hold another one).
pub const DOCKER: &str = "/usr/bin/docker";

/// An image with nothing in it; containers get the host's /usr and libraries read-only.
pub const EMPTY_IMAGE: &str = "udstrace-test-empty";

/// Runs the docker client.
#[must_use]
pub fn docker(args: &[&str]) -> Output {
    Command::new(DOCKER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker (installed by cargo xtask setup)")
}

/// Runs the docker client; its standard output, trimmed. Panics if it fails.
#[must_use]
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts dockerd unless one answers, and waits until it does. Err, saying why, when docker
/// cannot work here: no client, or no daemon answering within a minute.
pub fn start_dockerd() -> Result<(), String> {
    if !Path::new(DOCKER).exists() {
        return Err(format!(
            "{DOCKER} is missing (cargo xtask setup installs docker.io)"
        ));
    }
    if docker(&["version"]).status.success() {
        return Ok(());
    }
    // Left running for later tests (and runs): started through a shell that exits at once,
    // so that dockerd is nobody's child to wait for.
    let log = std::env::temp_dir().join("udstrace-test-dockerd.log");
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "/usr/sbin/dockerd --iptables=false --ip6tables=false --bridge=none \
             </dev/null >{} 2>&1 &",
            log.display()
        ))
        .status()
        .map_err(|e| format!("/bin/sh: {e}"))?;
    if !status.success() {
        return Err("starting dockerd failed".into());
    }
    let start = Instant::now();
    while !docker(&["version"]).status.success() {
        if start.elapsed() > Duration::from_mins(1) {
            return Err(format!(
                "dockerd did not answer in a minute (its log: {})",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Starts dockerd unless one answers (panics if none can) and makes the empty image.
pub fn dockerd() {
    if let Err(e) = start_dockerd() {
        panic!("{e}");
    }
    empty_image();
}

/// Makes the image with nothing in it unless it exists.
pub fn empty_image() {
    if docker(&["image", "inspect", EMPTY_IMAGE]).status.success() {
        return;
    }
    let empty = TempDir::new("empty-image");
    let root = empty.path("root");
    std::fs::create_dir_all(&root).unwrap();
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new(DOCKER)
        .args(["import", "-", EMPTY_IMAGE])
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of an empty folder");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A container running a Unix socket server on `dir/app.sock` (`/sock/app.sock` inside):
/// each connection gets `pong:` and what it sent, and is closed when the client closes it.
/// Removed when dropped.
pub struct Server {
    /// The container's name.
    pub name: String,
    /// Its full id.
    pub id: String,
}

impl Server {
    /// Starts the server in a container named `name` (replacing one left by an earlier run)
    /// and waits until its socket exists.
    #[must_use]
    pub fn start(name: &str, dir: &Path) -> Self {
        let id = run_python(
            name,
            dir,
            "import socket\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.bind('/sock/app.sock')\n\
             s.listen()\n\
             while True:\n\
             \x20   c, _ = s.accept()\n\
             \x20   try:\n\
             \x20       c.sendall(b'pong:' + c.recv(100))\n\
             \x20       c.recv(1)\n\
             \x20   except OSError:\n\
             \x20       pass\n\
             \x20   c.close()\n",
            &[],
        );
        let socket = dir.join("app.sock");
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            name: name.to_string(),
            id,
        }
    }

    /// The host's pid of the server (the container's first process).
    #[must_use]
    pub fn pid(&self) -> u32 {
        docker_ok(&["inspect", "--format", "{{.State.Pid}}", &self.id])
            .parse()
            .expect("a pid")
    }
}

/// Runs `python3 -c SCRIPT ARGS...` in a new container `name` (replacing one left by an
/// earlier run; no network; the host's /usr and libraries read-only; `dir` at /sock); its
/// full id.
#[must_use]
pub fn run_python(name: &str, dir: &Path, script: &str, args: &[&str]) -> String {
    let _ = docker(&["rm", "-f", name]);
    let volume = format!("{}:/sock", dir.display());
    let mut all = vec![
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "-v",
        "/usr:/usr:ro",
        "-v",
        "/lib:/lib:ro",
        "-v",
        "/lib64:/lib64:ro",
        "-v",
        &volume,
        EMPTY_IMAGE,
        "/usr/bin/python3",
        "-c",
        script,
    ];
    all.extend_from_slice(args);
    docker_ok(&all)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}
