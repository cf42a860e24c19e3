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
             \x20   try:\n\
             \x20       c.sendall(b'pong:' + c.recv(100))\n\
             \x20       c.recv(1)\n\
             \x20   except OSError:\n\
             \x20       pass\n\
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
    // The client sends at once, before the server accepts (the listener is in the
    // container's network namespace, where sock_diag does not look), and exits as soon as
    // the reply is in: the kernel names both receivers when the messages are sent.
    let client = short_client(&socket, "ping");
    assert_eq!(client.1, "pong:ping");
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
    assert_eq!(reply.meta("peer_pid"), Some(client.0.to_string().as_str()));
}

/// Runs a client that connects to `socket`, sends `request`, reads the reply and exits at
/// once; its pid and the reply.
fn short_client(socket: &Path, request: &str) -> (u32, String) {
    let child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import os, socket, sys\n\
             c = socket.socket(socket.AF_UNIX)\n\
             c.connect(sys.argv[1])\n\
             c.sendall(sys.argv[2].encode())\n\
             sys.stdout.write(c.recv(100).decode())\n\
             sys.stdout.flush()\n\
             os._exit(0)\n",
        ])
        .arg(socket)
        .arg(request)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    (pid, String::from_utf8(out.stdout).unwrap())
}

/// The host pid of a container's first process.
fn container_pid(name: &str) -> u32 {
    docker_ok(&["inspect", "-f", "{{.State.Pid}}", name])
        .parse()
        .unwrap()
}

/// A hundred short-lived clients on the host (connect, one request, exit as soon as the reply
/// is in), each with its own request, to a server in a container: every request names the
/// client as its sender and the server (its pid on the host, its container) as its receiver,
/// and every reply names the server as sender and the client, gone by then, as receiver.
#[test]
fn short_lived_clients_are_named_at_both_ends() {
    const RUNS: usize = 100;
    dockerd();
    let dir = TempDir::new("short-lived");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let name = format!("udstrace-short-{}", std::process::id());
    let server = Server::start(&name, &sock_dir);
    let server_pid = container_pid(&server.name).to_string();
    let file = dir.path("capture.pcapng");
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--comm", "python3"]);
    let socket = sock_dir.join("app.sock");
    let clients: Vec<(u32, String)> = (0..RUNS)
        .map(|i| {
            let request = format!("ping {i}");
            let (pid, reply) = short_client(&socket, &request);
            assert_eq!(reply, format!("pong:{request}"));
            (pid, request)
        })
        .collect();
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let (mut requests, mut replies) = (0, 0);
    for (pid, request) in &clients {
        let pid = pid.to_string();
        let find = |payload: &[u8]| {
            cap.packets
                .iter()
                .find(|p| p.payload() == payload)
                .unwrap_or_else(|| panic!("{:?} is captured", String::from_utf8_lossy(payload)))
        };
        let req = find(request.as_bytes());
        let reply = find(format!("pong:{request}").as_bytes());
        if req.meta("pid") == Some(pid.as_str())
            && req.meta("peer_pid") == Some(server_pid.as_str())
            && req.meta("peer_container") == Some(server.name.as_str())
        {
            requests += 1;
        } else {
            eprintln!("request of client {pid}: {}", req.comment);
        }
        if reply.meta("pid") == Some(server_pid.as_str())
            && reply.meta("container") == Some(server.name.as_str())
            && reply.meta("peer_pid") == Some(pid.as_str())
            && reply.meta("peer_comm") == Some("python3")
        {
            replies += 1;
        } else {
            eprintln!("reply to client {pid}: {}", reply.comment);
        }
    }
    eprintln!("both ends named: {requests}/{RUNS} requests, {replies}/{RUNS} replies");
    assert_eq!((requests, replies), (RUNS, RUNS));
}

/// The docker CLI against dockerd's own socket: every request and every reply names the
/// other end (dockerd's pid; the CLI process that made the call, exited by the time most of
/// its packets are written).
#[test]
fn docker_cli_requests_and_replies_name_both_ends() {
    dockerd();
    let dockerd_pid = std::fs::read_to_string("/var/run/docker.pid")
        .expect("dockerd's pid file")
        .trim()
        .to_string();
    let dir = TempDir::new("docker-cli");
    let file = dir.path("capture.pcapng");
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--path", "/run/docker.sock"]);
    let mut cli_pids = Vec::new();
    for args in [
        &["version"][..],
        &["ps", "-a"],
        &["images"],
        &["info"],
        &["image", "inspect", IMAGE],
    ] {
        let child = Command::new(DOCKER)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        cli_pids.push(child.id().to_string());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "docker {args:?}");
    }
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let from_cli: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| {
            p.meta("pid")
                .is_some_and(|pid| cli_pids.iter().any(|c| c == pid))
        })
        .collect();
    let from_dockerd: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| p.meta("pid") == Some(dockerd_pid.as_str()))
        .collect();
    assert!(
        from_cli
            .iter()
            .filter(|p| p.payload().starts_with(b"GET "))
            .count()
            >= 5,
        "every call's requests are captured: {} packets from the CLI",
        from_cli.len()
    );
    assert!(!from_dockerd.is_empty(), "dockerd's replies are captured");
    let requests_named = from_cli
        .iter()
        .filter(|p| p.meta("peer_pid") == Some(dockerd_pid.as_str()))
        .count();
    // A reply names the CLI process that sent on the connection it answers.
    let replies_named = from_dockerd
        .iter()
        .filter(|r| {
            from_cli
                .iter()
                .any(|q| q.meta("ino") == r.meta("peer_ino") && q.meta("pid") == r.meta("peer_pid"))
        })
        .count();
    eprintln!(
        "docker CLI: {requests_named}/{} requests and {replies_named}/{} replies name the other end",
        from_cli.len(),
        from_dockerd.len()
    );
    for p in &from_cli {
        assert_eq!(
            p.meta("peer_pid"),
            Some(dockerd_pid.as_str()),
            "{}",
            p.comment
        );
    }
    assert_eq!(
        replies_named,
        from_dockerd.len(),
        "every reply names its client"
    );
}
