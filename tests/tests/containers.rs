//! Containers, with a real dockerd (Debian's docker.io, started here when it is not running):
//! a server in a container bound to a bind-mounted socket, a client on the host; every packet
//! names the container of its sender and of its receiver, as docker itself names it.
//! `--container` keeps one container's messages (by name, by id prefix, started later), and
//! `--path` finds a container's socket by its file.

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use udstrace_tests::{read_capture, Pkt, TempDir, Udstrace};

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
        let id = run_python(
            name,
            dir,
            "import socket\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.bind('/sock/app.sock')\n\
             s.listen()\n\
             while True:\n\
             \x20   c, _ = s.accept()\n\
             \x20   c.sendall(b'pong:' + c.recv(100))\n\
             \x20   c.recv(1)\n\
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
}

/// Runs `python3 -c SCRIPT ARGS...` in a new container `name` (no network; the host's /usr
/// and libraries read-only; `dir` at /sock); its full id.
fn run_python(name: &str, dir: &Path, script: &str, args: &[&str]) -> String {
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
        IMAGE,
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

/// A container that sends tagged messages when told to: for round `r`, once `go-TAG-r`
/// appears in its folder, `TAGr:stream:i` on a stream socketpair and `TAGr:dgram:i` on a
/// datagram one (i = 0, 1, 2), then it writes `done-TAG-r`. Removed when dropped.
struct Talker {
    name: String,
    id: String,
    /// Its python3's process id on the host (`docker inspect`).
    pid: String,
    dir: std::path::PathBuf,
    tag: String,
}

/// What a talker sends in a round (the host's talker too).
const SEND_ROUND: &str = "
def send_round(label):
    for kind, name in ((socket.SOCK_STREAM, 'stream'), (socket.SOCK_DGRAM, 'dgram')):
        a, b = socket.socketpair(socket.AF_UNIX, kind)
        for i in range(3):
            a.send(f'{label}:{name}:{i}'.encode())
            b.recv(100)
";

impl Talker {
    fn start(name: &str, tag: &str, dir: &Path) -> Self {
        let script = format!(
            "import os, socket, sys, time\n{SEND_ROUND}\n\
             tag = sys.argv[1]\n\
             for r in range(1, 100):\n\
             \x20   while not os.path.exists(f'/sock/go-{{tag}}-{{r}}'):\n\
             \x20       time.sleep(0.02)\n\
             \x20   send_round(f'{{tag}}{{r}}')\n\
             \x20   open(f'/sock/done-{{tag}}-{{r}}', 'w').close()\n"
        );
        let id = run_python(name, dir, &script, &[tag]);
        let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", name]);
        assert_ne!(pid, "0", "{name} is running");
        Self {
            name: name.to_string(),
            id,
            pid,
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
        }
    }

    /// Makes it send round `round` and waits until it has.
    fn talk(&self, round: u32) {
        std::fs::write(self.dir.join(format!("go-{}-{round}", self.tag)), b"").unwrap();
        let done = self.dir.join(format!("done-{}-{round}", self.tag));
        let start = Instant::now();
        while !done.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} did not send round {round}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Talker {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

/// The host's own talker: one round labelled `label`.
fn host_talk(label: &str) {
    let script = format!("import socket, sys\n{SEND_ROUND}\nsend_round(sys.argv[1])\n");
    let status = Command::new("/usr/bin/python3")
        .args(["-c", &script, label])
        .status()
        .unwrap();
    assert!(status.success());
}

/// What a round labelled `label` sends.
fn round(label: &str) -> BTreeSet<String> {
    ["stream", "dgram"]
        .iter()
        .flat_map(|kind| (0..3).map(move |i| format!("{label}:{kind}:{i}")))
        .collect()
}

/// The payloads of a capture, and each packet's sender pid and container.
fn captured(file: &Path) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let cap = read_capture(file);
    let payloads = cap
        .packets
        .iter()
        .map(|p| String::from_utf8_lossy(p.payload()).into_owned())
        .collect();
    let senders = cap
        .packets
        .iter()
        .map(|p| {
            (
                p.meta("pid").unwrap_or("").to_string(),
                p.meta("container").unwrap_or("").to_string(),
            )
        })
        .collect();
    (payloads, senders)
}

/// `--container` by name and by id prefix: two containers and the host send at once; the
/// capture holds the first container's messages, all from its process, and nothing else.
#[test]
fn container_filter_keeps_one_container() {
    dockerd();
    let dir = TempDir::new("container-filter");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let pid = std::process::id();
    let first = Talker::start(&format!("udstrace-cf-a-{pid}"), "a", &sock_dir);
    let second = Talker::start(&format!("udstrace-cf-b-{pid}"), "b", &sock_dir);
    for (r, value) in [(1, first.name.clone()), (2, first.id[..12].to_string())] {
        let file = dir.path(&format!("round-{r}.pcapng"));
        let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--container", &value]);
        first.talk(r);
        second.talk(r);
        host_talk(&format!("h{r}"));
        let done = ud.stop();
        assert!(done.success, "{:?}", done.stderr);
        let (payloads, senders) = captured(&file);
        assert_eq!(payloads, round(&format!("a{r}")), "--container {value}");
        assert_eq!(
            senders,
            [(first.pid.clone(), first.name.clone())].into(),
            "--container {value}"
        );
    }
}

/// `--container NAME` for a container that starts after the capture: one line says it is
/// waited for, another that it started; then its messages are captured.
#[test]
fn container_filter_waits_for_the_container() {
    dockerd();
    let dir = TempDir::new("container-later");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let name = format!("udstrace-cf-late-{}", std::process::id());
    let _ = docker(&["rm", "-f", &name]);
    let file = dir.path("later.pcapng");
    let mut ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--container", &name]);
    let waiting = format!("udstrace: waiting for container {name} (not running yet)");
    assert!(ud.stderr_lines.contains(&waiting), "{:?}", ud.stderr_lines);
    host_talk("h1");
    let late = Talker::start(&name, "c", &sock_dir);
    let started = ud.wait_for_stderr("started: captured from now on", Duration::from_secs(30));
    assert_eq!(
        started,
        format!(
            "udstrace: container {name} ({}) started: captured from now on",
            &late.id[..12]
        )
    );
    late.talk(1);
    host_talk("h2");
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let (payloads, senders) = captured(&file);
    assert_eq!(payloads, round("c1"));
    assert_eq!(senders, [(late.pid.clone(), name.clone())].into());
}

/// A host client of a server in a container (`--network none`), which bound
/// `/sock/app.sock`: `--path HOSTDIR/app.sock` names the same file, so the kernel keeps both
/// directions though neither socket has the host's name; another socket's traffic is left
/// out. Then the same with `--path` given before the server exists.
#[test]
fn path_filter_finds_a_container_socket_by_its_file() {
    dockerd();
    let dir = TempDir::new("container-path");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let socket = sock_dir.join("app.sock");
    let name = format!("udstrace-path-{}", std::process::id());
    for late in [false, true] {
        let _ = std::fs::remove_file(&socket);
        let server = (!late).then(|| Server::start(&name, &sock_dir));
        let file = dir.path(&format!("path-{late}.pcapng"));
        let mut ud = Udstrace::start(&[
            "-w",
            file.to_str().unwrap(),
            "--path",
            socket.to_str().unwrap(),
        ]);
        let server = server.unwrap_or_else(|| {
            let waiting = format!(
                "udstrace: waiting for {} (no socket there yet)",
                socket.display()
            );
            assert!(ud.stderr_lines.contains(&waiting), "{:?}", ud.stderr_lines);
            let server = Server::start(&name, &sock_dir);
            let appeared = ud.wait_for_stderr("appeared", Duration::from_secs(30));
            assert_eq!(
                appeared,
                format!(
                    "udstrace: {} appeared: captured from now on",
                    socket.display()
                )
            );
            server
        });
        let client = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import socket, sys\n\
                 c = socket.socket(socket.AF_UNIX)\n\
                 c.connect(sys.argv[1])\n\
                 c.sendall(b'ping')\n\
                 print(c.recv(100).decode(), flush=True)\n\
                 x, y = socket.socketpair()\n\
                 x.sendall(b'unrelated')\n\
                 y.recv(100)\n",
            ])
            .arg(&socket)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "pong:ping");
        let done = ud.stop();
        assert!(done.success, "{:?}", done.stderr);
        let cap = read_capture(&file);
        let payloads: Vec<&[u8]> = cap.packets.iter().map(Pkt::payload).collect();
        assert_eq!(payloads, [&b"ping"[..], b"pong:ping"], "late: {late}");
        // The names the sockets have: the container's, not the host's.
        assert_eq!(cap.packets[0].meta("peer_path"), Some("/sock/app.sock"));
        assert_eq!(cap.packets[1].meta("path"), Some("/sock/app.sock"));
        assert_eq!(cap.packets[1].meta("container"), Some(server.name.as_str()));
        drop(server);
    }
}
