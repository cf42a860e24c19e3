//! Containers, with a real dockerd (Debian's docker.io, started here when it is not running):
//! a server in a container bound to a bind-mounted socket, a client on the host; every packet
//! names the container of its sender and of its receiver, as docker itself names it;
//! `udstrace ls` lists the sockets of the container's network namespace; `--container` keeps
//! one container's messages (by name, by id prefix, started later), and `--path` finds a
//! container's socket by its file.

use std::{
    collections::{BTreeSet, HashMap},
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use udstrace_tests::{
    docker::{docker, docker_ok, dockerd, run_python, Server, DOCKER, EMPTY_IMAGE as IMAGE},
    inode, link_number, read_capture, run, Pkt, TempDir, Udstrace,
};

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
    // dockerd's replies on the CLI's connections (other tests talk to dockerd meanwhile).
    let from_dockerd: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| {
            p.meta("pid") == Some(dockerd_pid.as_str())
                && from_cli.iter().any(|q| q.meta("ino") == p.meta("peer_ino"))
        })
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

/// The JSON object of socket `ino` in `udstrace ls --json` output.
fn entry(json: &str, ino: u64) -> &str {
    json.lines()
        .find(|l| l.contains(&format!("\"ino\":{ino},")))
        .unwrap_or_else(|| panic!("socket {ino} not listed:\n{json}"))
}

/// The inodes of the sockets `udstrace ls --json` lists.
fn listed(json: &str) -> BTreeSet<u64> {
    json.lines()
        .filter_map(|l| l.split_once("\"ino\":"))
        .map(|(_, rest)| rest.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// What the kernel and docker say of a container's server and a host client connected to it.
struct Truth {
    /// The server's pid, from `docker inspect`.
    pid: String,
    /// The container's name, as `docker inspect` gives it (without its `/`).
    name: String,
    /// The container's network namespace (`/proc/PID/ns/net`) and the host's.
    their_ns: u64,
    our_ns: u64,
    /// The server's sockets (`/proc/PID/fd`): which one listens (`/proc/PID/net/unix`).
    listener: u64,
    accepted: u64,
    /// The namespace of the accepted connection: the kernel makes it in the connecting
    /// socket's, so the host's.
    accepted_ns: u64,
    client: u64,
}

impl Truth {
    fn of(container: &str, client: &UnixStream) -> Self {
        let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", container]);
        let name = docker_ok(&["inspect", "-f", "{{.Name}}", container]);
        let proc = Path::new("/proc").join(&pid);
        let their_ns = link_number(&proc.join("ns/net"), "net").unwrap();
        let our_ns = link_number(Path::new("/proc/self/ns/net"), "net").unwrap();
        assert_ne!(their_ns, our_ns, "--network none: a namespace of its own");
        let theirs: BTreeSet<u64> = std::fs::read_dir(proc.join("fd"))
            .unwrap()
            .filter_map(|e| link_number(&e.unwrap().path(), "socket"))
            .collect();
        assert_eq!(theirs.len(), 2, "the listener and the accepted connection");
        // /proc/PID/net/unix: the sockets of the process's network namespace (inode ->
        // whether its flags are 00010000, a listener's).
        let net_unix = |proc: &Path| {
            std::fs::read_to_string(proc.join("net/unix"))
                .unwrap()
                .lines()
                .skip(1)
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f[6].parse::<u64>().unwrap(), f[3] == "00010000")
                })
                .collect::<HashMap<u64, bool>>()
        };
        let (in_theirs, in_ours) = (net_unix(&proc), net_unix(Path::new("/proc/self")));
        let ns_of = |ino: u64| {
            if in_theirs.contains_key(&ino) {
                their_ns
            } else {
                assert!(in_ours.contains_key(&ino), "{ino} is in no namespace");
                our_ns
            }
        };
        let listener = *theirs
            .iter()
            .find(|ino| in_theirs.get(ino) == Some(&true))
            .expect("the server's listener in its namespace");
        let accepted = *theirs.iter().find(|&&ino| ino != listener).unwrap();
        let client = inode(client);
        assert_eq!(ns_of(client), our_ns);
        Self {
            pid,
            name: name.trim_start_matches('/').to_string(),
            their_ns,
            our_ns,
            listener,
            accepted,
            accepted_ns: ns_of(accepted),
            client,
        }
    }

    /// `udstrace ls --json` has the server's two sockets, with their namespaces, holder and
    /// container.
    fn check_server(&self, json: &str) {
        let (pid, name) = (&self.pid, &self.name);
        let l = entry(json, self.listener);
        assert!(l.contains("\"state\":\"LISTEN\","), "{l}");
        assert!(l.contains(&format!("\"netns\":{},", self.their_ns)), "{l}");
        assert!(l.contains("\"path\":\"/sock/app.sock\""), "{l}");
        let holder = format!("\"processes\":[{{\"pid\":{pid},\"comm\":\"python3\",\"fd\":");
        assert!(l.contains(&holder), "{l}");
        let container = format!("\"container\":\"{name}\"}}],\"peer_processes\"");
        assert!(l.contains(&container), "{l}");
        let a = entry(json, self.accepted);
        assert!(a.contains("\"state\":\"ESTAB\","), "{a}");
        let peer = format!(
            "\"peer_ino\":{},\"netns\":{},",
            self.client, self.accepted_ns
        );
        assert!(a.contains(&peer), "{a}");
        assert!(a.contains(&holder), "{a}");
        assert!(a.contains(&container), "{a}");
    }

    /// `udstrace ls --json` has the host's client: in no container, its peer in the server's.
    fn check_client(&self, json: &str) {
        let c = entry(json, self.client);
        let peer = format!("\"peer_ino\":{},\"netns\":{},", self.accepted, self.our_ns);
        assert!(c.contains(&peer), "{c}");
        let me = format!("\"processes\":[{{\"pid\":{},\"comm\":", std::process::id());
        assert!(c.contains(&me), "{c}");
        let host = "\"container\":\"\"}],\"peer_processes\":[{\"pid\"";
        assert!(c.contains(host), "{c}");
        let server = format!("\"container\":\"{}\"}}]}}", self.name);
        assert!(c.contains(&server), "{c}");
    }

    /// `udstrace ls --path HOST_PATH`: the container in its column, the server as the
    /// client's peer.
    fn check_table(&self, table: &str) {
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header[..6],
            ["TYPE", "STATE", "INODE", "PEER", "PATH", "CONTAINER"]
        );
        let row = |ino: u64| {
            lines[1..]
                .iter()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f[2] == ino.to_string())
                .unwrap_or_else(|| panic!("{ino} not in\n{table}"))
        };
        let listener = self.listener.to_string();
        assert_eq!(
            row(self.listener)[..6],
            [
                "stream",
                "LISTEN",
                &listener,
                "0",
                "/sock/app.sock",
                &self.name
            ]
        );
        assert_eq!(row(self.accepted)[5], self.name);
        // The client's row: unnamed, so its peer's name, then `-` for the host.
        let c = row(self.client);
        assert_eq!(c[4..7], ["->", "/sock/app.sock", "-"]);
        let server = format!("@{}", self.name);
        assert!(c.last().unwrap().ends_with(&server), "{c:?}");
    }
}

/// A server in a container (a network namespace of its own) and a host client that stays
/// connected: `udstrace ls --path HOST_PATH` lists the container's listening socket and the
/// connection it accepted, found by the file the host's path names (the server bound
/// `/sock/app.sock`), with the client's end, each with its network namespace and the
/// container docker names; the full listing, and the name inside the container, have them
/// too. A capture filtered by the host's path records the exchange, though neither end was
/// bound with that name.
#[test]
fn ls_lists_a_container_server_by_its_host_path() {
    dockerd();
    assert!(
        !Path::new("/sock/app.sock").exists(),
        "the container's name for the socket must not be a file on the host"
    );
    let dir = TempDir::new("container-ls");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let container = format!("udstrace-ls-{}", std::process::id());
    let _server = Server::start(&container, &sock_dir);
    let socket = sock_dir.join("app.sock");
    let host_path = socket.to_str().unwrap();
    let capture = dir.path("capture.pcapng");
    let ud = Udstrace::start(&["-w", capture.to_str().unwrap(), "--path", host_path]);

    // The file appears at bind(), the server listens a moment later.
    let start = Instant::now();
    let mut client = loop {
        match UnixStream::connect(&socket) {
            Ok(c) => break c,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(10), "connect: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    client.write_all(b"ping").unwrap();
    let mut reply = [0u8; 9];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"pong:ping");
    // The server has accepted and waits for the client to close.
    let truth = Truth::of(&container, &client);

    let by_path = run(&["ls", "--json", "--path", host_path]);
    assert!(by_path.success, "{:?}", by_path.stderr);
    assert_eq!(
        listed(&by_path.stdout),
        BTreeSet::from([truth.listener, truth.accepted, truth.client]),
        "{}",
        by_path.stdout
    );
    truth.check_server(&by_path.stdout);
    truth.check_client(&by_path.stdout);
    for args in [
        &["ls", "--json"][..],
        &["ls", "--json", "--path", "/sock/app.sock"],
    ] {
        let out = run(args);
        assert!(out.success, "{:?}", out.stderr);
        truth.check_server(&out.stdout);
        truth.check_client(&out.stdout);
    }
    let table = run(&["ls", "--path", host_path]);
    assert!(table.success, "{:?}", table.stderr);
    truth.check_table(&table.stdout);

    drop(client);
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&capture);
    let payloads: Vec<&[u8]> = cap
        .packets
        .iter()
        .map(udstrace_tests::Pkt::payload)
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(payloads, [b"ping".as_slice(), b"pong:ping"]);
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

/// `--container SERVER` keeps both directions of a host client's exchange with a server in
/// that container: the request is the host's, selected by its receiver (the kernel names the
/// server's process, in the container's cgroup); the host's other traffic is left out.
#[test]
fn container_filter_keeps_what_is_sent_to_the_container() {
    dockerd();
    let dir = TempDir::new("container-receiver");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let name = format!("udstrace-cf-srv-{}", std::process::id());
    let server = Server::start(&name, &sock_dir);
    let file = dir.path("capture.pcapng");
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--container", &server.name]);
    let socket = sock_dir.join("app.sock");
    let (first, reply) = short_client(&socket, "to the container");
    assert_eq!(reply, "pong:to the container");
    host_talk("host");
    // A second connection: now the server's accepted socket is new again (peer credentials
    // name the server before it has sent anything on it).
    let (second, _) = short_client(&socket, "again");
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let payloads: Vec<String> = cap
        .packets
        .iter()
        .map(|p| String::from_utf8_lossy(p.payload()).into_owned())
        .collect();
    assert_eq!(
        payloads,
        [
            "to the container",
            "pong:to the container",
            "again",
            "pong:again"
        ],
        "only the exchanges with the container"
    );
    let server_pid = container_pid(&server.name).to_string();
    for (p, client) in cap.packets.iter().zip([first, first, second, second]) {
        let client = client.to_string();
        let (sender, receiver) = if p.meta("container").is_some() {
            (&server_pid, &client)
        } else {
            (&client, &server_pid)
        };
        assert_eq!(p.meta("pid"), Some(sender.as_str()), "{}", p.comment);
        assert_eq!(p.meta("peer_pid"), Some(receiver.as_str()), "{}", p.comment);
    }
}

/// A client in a second container reaches the server's container through the same host
/// folder: two captures at once, one by `--path HOSTDIR/app.sock` (the client and the server
/// know the socket as `/sock/app.sock`), one by `--container SERVER`, each hold the request and
/// the reply with both containers named at both ends, as docker names them.
#[test]
fn container_to_container_by_path_and_by_container() {
    dockerd();
    let dir = TempDir::new("container-pair");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let pid = std::process::id();
    let server = Server::start(&format!("udstrace-pair-srv-{pid}"), &sock_dir);
    let client_name = format!("udstrace-pair-cli-{pid}");
    let socket = sock_dir.join("app.sock");
    let by_path = dir.path("by-path.pcapng");
    let by_container = dir.path("by-container.pcapng");
    let captures = [
        Udstrace::start(&[
            "-w",
            by_path.to_str().unwrap(),
            "--path",
            socket.to_str().unwrap(),
        ]),
        Udstrace::start(&[
            "-w",
            by_container.to_str().unwrap(),
            "--container",
            &server.name,
        ]),
    ];
    let client_id = run_python(
        &client_name,
        &sock_dir,
        "import socket\n\
         c = socket.socket(socket.AF_UNIX)\n\
         c.connect('/sock/app.sock')\n\
         c.sendall(b'from the next container')\n\
         open('/sock/reply', 'wb').write(c.recv(100))\n",
        &[],
    );
    let status = docker_ok(&["wait", &client_id]);
    let _ = docker(&["rm", "-f", &client_name]);
    assert_eq!(status, "0", "the client container's exit status");
    assert_eq!(
        std::fs::read(sock_dir.join("reply")).unwrap(),
        b"pong:from the next container"
    );
    for (ud, file) in captures.into_iter().zip([&by_path, &by_container]) {
        let done = ud.stop();
        assert!(done.success, "{:?}", done.stderr);
        let cap = read_capture(file);
        let find = |payload: &[u8]| {
            cap.packets
                .iter()
                .find(|p| p.payload() == payload)
                .unwrap_or_else(|| panic!("{}: {payload:?} captured", file.display()))
        };
        let request = find(b"from the next container");
        let reply = find(b"pong:from the next container");
        assert_eq!(
            request.meta("container"),
            Some(client_name.as_str()),
            "{}: {}",
            file.display(),
            request.comment
        );
        assert_eq!(request.meta("container_id"), Some(client_id.as_str()));
        assert_eq!(
            request.meta("peer_container"),
            Some(server.name.as_str()),
            "{}",
            request.comment
        );
        assert_eq!(request.meta("peer_path"), Some("/sock/app.sock"));
        assert_eq!(reply.meta("container"), Some(server.name.as_str()));
        assert_eq!(
            reply.meta("peer_container"),
            Some(client_name.as_str()),
            "{}",
            reply.comment
        );
    }
}
