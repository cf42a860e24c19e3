//! Containers, with a real dockerd (Debian's docker.io, started here when it is not running):
//! a server in a container bound to a bind-mounted socket, a client on the host; every packet
//! names the container of its sender and of its receiver, as docker itself names it.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use udstrace_tests::{read_capture, TempDir, Udstrace};

/// Debian's docker client (`/usr/local/bin` may hold another one).
const DOCKER: &str = "/usr/bin/docker";

/// An image with nothing in it; containers get the host's /usr and libraries read-only.
const IMAGE: &str = "udstrace-test-empty";

fn docker(args: &[&str]) -> Output {
    Command::new(DOCKER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker (installed by cargo xtask setup)")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts dockerd unless one answers, and waits until it does; makes the empty image.
fn dockerd() {
    if !docker(&["version"]).status.success() {
        // Left running for later tests (and runs): started through a shell that exits at
        // once, so that dockerd is nobody's child to wait for.
        let log = std::env::temp_dir().join("udstrace-test-dockerd.log");
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "/usr/sbin/dockerd --iptables=false --ip6tables=false --bridge=none \
                 </dev/null >{} 2>&1 &",
                log.display()
            ))
            .status()
            .expect("/bin/sh");
        assert!(
            status.success(),
            "starting dockerd (installed by cargo xtask setup)"
        );
        let start = Instant::now();
        while !docker(&["version"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_mins(1),
                "dockerd did not answer in a minute"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if !docker(&["image", "inspect", IMAGE]).status.success() {
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
            .args(["import", "-", IMAGE])
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
}

/// A container running a Unix socket server on `dir/app.sock` (`/sock/app.sock` inside):
/// each connection gets `pong:` and what it sent, and is closed when the client closes it.
/// Removed when dropped.
struct Server {
    name: String,
    id: String,
}

impl Server {
    fn start(name: &str, dir: &Path) -> Self {
        let _ = docker(&["rm", "-f", name]);
        let volume = format!("{}:/sock", dir.display());
        let id = docker_ok(&[
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
            IMAGE,
            "/usr/bin/python3",
            "-c",
            "import socket\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.bind('/sock/app.sock')\n\
             s.listen()\n\
             while True:\n\
             \x20   c, _ = s.accept()\n\
             \x20   c.sendall(b'pong:' + c.recv(100))\n\
             \x20   c.recv(1)\n\
             \x20   c.close()\n",
        ]);
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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

/// A request from the host and its reply: the request names the server's container as its
/// receiver, the reply names it as its sender (name and full id, as `docker inspect` gives
/// them), and the host's client is in no container.
#[test]
fn container_server_and_host_client_are_named() {
    dockerd();
    let dir = TempDir::new("container");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let name = format!("udstrace-web-{}", std::process::id());
    let server = Server::start(&name, &sock_dir);
    let file = dir.path("capture.pcapng");
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--comm", "python3"]);
    let socket = sock_dir.join("app.sock");
    // Receivers are found in /proc when udstrace writes the packet: the client sends once
    // the server has accepted (a connection not accepted yet is received by the listener's
    // holders, found by the listener's name through sock_diag, which sees no socket of the
    // container's network namespace), and both ends stay open for half a second.
    let client = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys, time\n\
             c = socket.socket(socket.AF_UNIX)\n\
             c.connect(sys.argv[1])\n\
             time.sleep(0.2)\n\
             c.sendall(b'ping')\n\
             print(c.recv(100).decode(), flush=True)\n\
             time.sleep(0.5)\n",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "pong:ping");
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let request = cap
        .packets
        .iter()
        .find(|p| p.payload() == b"ping")
        .expect("the request is captured");
    let reply = cap
        .packets
        .iter()
        .find(|p| p.payload() == b"pong:ping")
        .expect("the reply is captured");
    assert_eq!(request.meta("container"), None, "{}", request.comment);
    assert_eq!(
        request.meta("peer_container"),
        Some(server.name.as_str()),
        "{}",
        request.comment
    );
    assert_eq!(
        reply.meta("container"),
        Some(server.name.as_str()),
        "{}",
        reply.comment
    );
    assert_eq!(
        reply.meta("container_id"),
        Some(server.id.as_str()),
        "{}",
        reply.comment
    );
    assert!(reply.meta("cgroup").is_some(), "{}", reply.comment);
    assert_eq!(reply.meta("peer_container"), None, "{}", reply.comment);
}
