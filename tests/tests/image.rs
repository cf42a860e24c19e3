//! udstrace's container image, built from the binary under test by the script `cargo xtask
//! image` uses (xtask/image.sh), capturing from inside a container what the host and another
//! container send: the exact bytes, the host's pids, the containers' names. Run as the README
//! runs it, with the state files mounted where they lie, and as Kubernetes' node debugging
//! lays it out (the host's file system at /host, udstrace in its own cgroup namespace), there
//! also with `--container`.

use std::{
    fmt::Write as _,
    fs::File,
    io::{BufRead, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use udstrace_tests::{
    docker::{docker, docker_ok, empty_image, start_dockerd, Server, DOCKER},
    pattern, read_capture, run, udstrace_bin, CaptureFile, Pkt, TempDir,
};

/// How Kubernetes' node debugging runs a pod, in docker's words: the host's pid and network
/// namespaces, a cgroup namespace of its own, the host's file system at /host.
const NODE: [&str; 5] = [
    "--pid=host",
    "--network=host",
    "--cgroupns=private",
    "-v",
    "/:/host:ro",
];

/// An image tag of this test run, removed when dropped (a failed run leaves none).
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

/// Builds the image from the binary under test, tagged `tag`, as `cargo xtask image` does.
fn build_image(tag: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/image.sh");
    let out = Command::new("/bin/sh")
        .arg(script)
        .arg(udstrace_bin())
        .arg(tag)
        .env("DOCKER", DOCKER)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xtask/image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}}",
            tag
        ]),
        r#"["/usr/bin/udstrace"]"#
    );
}

/// The README's `--privileged`. A machine that runs in a container itself may lack some
/// capability in its own bounding set; docker cannot grant them all there, and the test uses
/// what the README gives for that case: the two capabilities udstrace needs.
fn privileges() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap();
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let all = u64::MAX >> (63 - last);
    if bounding & all == all {
        vec!["--privileged"]
    } else {
        vec!["--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"]
    }
}

/// udstrace running in its image (`docker run`), its pcapng on standard output written to
/// a file. Removed when dropped.
struct Capture {
    name: String,
    child: Child,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Capture {
    /// Starts `docker run --rm --name NAME DOCKER_ARGS IMAGE -w - UDSTRACE_ARGS` and waits
    /// until udstrace says it is listening.
    fn start(name: &str, docker_args: &[&str], image: &str, args: &[&str], file: &Path) -> Self {
        let _ = docker(&["rm", "-f", name]);
        let mut child = Command::new(DOCKER)
            .args(["run", "--rm", "--name", name])
            .args(docker_args)
            .arg(image)
            .args(["-w", "-"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(file).unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut me = Self {
            name: name.to_string(),
            child,
            stderr: rx,
            lines: Vec::new(),
        };
        while let Ok(line) = me.stderr.recv_timeout(Duration::from_mins(3)) {
            let listening = line.starts_with("listening on");
            me.lines.push(line);
            if listening {
                return me;
            }
        }
        panic!("udstrace in {name} did not start listening: {:?}", me.lines);
    }

    /// Sends udstrace `signal` (`docker kill`), as Ctrl-C or `docker stop` would, and waits
    /// for the container to end: udstrace must end cleanly and say what it captured.
    fn stop(&mut self, signal: &str) {
        // Let the last records reach the ring buffer's reader.
        std::thread::sleep(Duration::from_millis(300));
        let _ = docker_ok(&["kill", "--signal", signal, &self.name]);
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.lines.push(line);
        }
        assert!(status.success(), "{status}: {:?}", self.lines);
        assert!(
            self.lines.iter().any(|l| l.contains("packets captured")),
            "{:?}",
            self.lines
        );
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
        let _ = self.child.wait();
    }
}

/// A host process's socketpair: one end sends `request`, the other answers `reply`; the
/// process stays half a second (udstrace finds receivers in /proc when it writes the packet).
/// The process's pid.
fn socketpair_exchange(request: &[u8], reply: &[u8]) -> u32 {
    let child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys, time\n\
             a, b = socket.socketpair()\n\
             request, reply = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])\n\
             a.sendall(request)\n\
             got = b''\n\
             while len(got) < len(request): got += b.recv(65536)\n\
             b.sendall(reply)\n\
             got = b''\n\
             while len(got) < len(reply): got += a.recv(65536)\n\
             print(got.hex(), flush=True)\n\
             time.sleep(0.5)\n",
        ])
        .arg(hex(request))
        .arg(hex(reply))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), hex(reply));
    pid
}

/// A host client of the server in a container: sends `request` once the server has
/// accepted, reads the reply, and keeps both ends open for half a second (so that a receiver
/// the kernel cannot name is still in /proc when udstrace writes the packet). The client's
/// pid.
fn client_exchange(socket: &Path, request: &[u8]) -> u32 {
    let child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys, time\n\
             c = socket.socket(socket.AF_UNIX)\n\
             c.connect(sys.argv[1])\n\
             time.sleep(0.2)\n\
             c.sendall(bytes.fromhex(sys.argv[2]))\n\
             print(c.recv(200).hex(), flush=True)\n\
             time.sleep(0.5)\n",
        ])
        .arg(socket)
        .arg(hex(request))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let reply = [b"pong:".as_slice(), request].concat();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), hex(&reply));
    pid
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The one packet carrying exactly `payload`, sent by process `pid`.
fn packet<'a>(cap: &'a CaptureFile, payload: &[u8], pid: u32) -> &'a Pkt {
    let found: Vec<&Pkt> = cap
        .packets
        .iter()
        .filter(|p| p.payload() == payload)
        .collect();
    assert_eq!(found.len(), 1, "packets with {}", hex(payload));
    let p = found[0];
    assert_eq!(p.pid_tid.map(|(pid, _)| pid), Some(pid), "{}", p.comment);
    assert_eq!(
        p.meta("pid"),
        Some(pid.to_string().as_str()),
        "{}",
        p.comment
    );
    assert_eq!(p.meta("comm"), Some("python3"), "{}", p.comment);
    p
}

/// What every run shares: the image, and the server in its container.
struct Setup<'a> {
    image: &'a str,
    server: &'a Server,
    socket: &'a Path,
}

/// One way of running the image.
struct Run<'a> {
    name: &'a str,
    docker_args: Vec<&'a str>,
    udstrace_args: &'a [&'a str],
    /// What stops the capture (`docker kill --signal`).
    signal: &'a str,
    /// Whether the request must name the server's container as its receiver.
    receivers_named: bool,
    /// Whether the capture keeps the host's socketpair: it is selected by process (this
    /// test's and the server's), else by the `--container` in `udstrace_args`.
    by_pid: bool,
}

/// One capture in the image: the two exchanges, then what the capture says of them.
fn capture_both(setup: &Setup, run: &Run) {
    let Setup {
        image,
        server,
        socket,
    } = *setup;
    let run_name = run.name;
    let dir = TempDir::new(run_name);
    let file = dir.path("capture.pcapng");
    let name = format!("udstrace-{run_name}-{}", std::process::id());
    // This test's processes from now on and the server's only: another program's traffic
    // would make udstrace scan /proc for its receivers just before the request, and a scan
    // is not repeated within the next second (the server's end of the connection would go
    // unnamed).
    let pids = format!("{},{}", std::process::id(), server.pid());
    let mut args = if run.by_pid {
        vec!["-p", &pids, "--follow"]
    } else {
        Vec::new()
    };
    args.extend_from_slice(run.udstrace_args);
    let mut capture = Capture::start(&name, &run.docker_args, image, &args, &file);
    let seed = u64::from(std::process::id()) << 8;
    let (pair_request, pair_reply) = (pattern(seed, 3000), pattern(seed + 1, 1000));
    let pair_pid = socketpair_exchange(&pair_request, &pair_reply);
    let request = pattern(seed + 2, 64);
    let client_pid = client_exchange(socket, &request);
    capture.stop(run.signal);

    let cap = read_capture(&file);
    assert!(cap.ends_with_stats, "{run_name}: the capture ends cleanly");
    for payload in [&pair_request, &pair_reply] {
        if !run.by_pid {
            assert!(
                cap.packets
                    .iter()
                    .all(|p| p.payload() != payload.as_slice()),
                "{run_name}: the host's socketpair is not in the container"
            );
            continue;
        }
        let p = packet(&cap, payload, pair_pid);
        let pid = pair_pid.to_string();
        assert_eq!(
            p.meta("peer_pid"),
            Some(pid.as_str()),
            "{run_name}: {}",
            p.comment
        );
        assert_eq!(p.meta("container"), None, "{run_name}: {}", p.comment);
        assert_eq!(p.meta("peer_container"), None, "{run_name}: {}", p.comment);
    }
    let p = packet(&cap, &request, client_pid);
    assert_eq!(p.meta("container"), None, "{run_name}: {}", p.comment);
    if run.receivers_named {
        assert_eq!(
            p.meta("peer_container"),
            Some(server.name.as_str()),
            "{run_name}: {}",
            p.comment
        );
    }
    let reply = [b"pong:".as_slice(), &request].concat();
    let p = packet(&cap, &reply, server.pid());
    assert_eq!(
        p.meta("container"),
        Some(server.name.as_str()),
        "{run_name}: {}",
        p.comment
    );
    assert_eq!(
        p.meta("container_id"),
        Some(server.id.as_str()),
        "{run_name}: {}",
        p.comment
    );
    assert_eq!(
        p.meta("runtime"),
        Some("docker"),
        "{run_name}: {}",
        p.comment
    );
}

/// The image captures the host (a socketpair) and a container (a server a host client talks
/// to) with the host's pids and the container's docker name: run as the README runs it
/// (stopped as Ctrl-C stops it), and laid out as `kubectl debug node/...` lays it out
/// (stopped as `docker stop` stops it).
#[test]
fn image_captures_the_host_and_its_containers() {
    if let Err(why) = start_dockerd() {
        // Written past the test harness's capture, so that a skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "image_captures_the_host_and_its_containers: SKIPPED, docker cannot work here: {why}"
        );
        return;
    }
    empty_image();
    let image = Image(format!("udstrace-test:{}", std::process::id()));
    build_image(&image.0);
    let dir = TempDir::new("image");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let server = Server::start(&format!("udstrace-web-{}", std::process::id()), &sock_dir);
    let socket = sock_dir.join("app.sock");
    let setup = Setup {
        image: &image.0,
        server: &server,
        socket: &socket,
    };

    // The README's line: the host's pid, network and cgroup namespaces, the cgroup
    // hierarchy and docker's state mounted where they lie; stopped as Ctrl-C stops it.
    let mut docker_args = privileges();
    docker_args.extend([
        "--pid=host",
        "--network=host",
        "--cgroupns=host",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "-v",
        "/var/lib/docker/containers:/var/lib/docker/containers:ro",
    ]);
    capture_both(
        &setup,
        &Run {
            name: "image-readme",
            docker_args,
            udstrace_args: &[],
            signal: "INT",
            receivers_named: true,
            by_pid: true,
        },
    );

    // Kubernetes' node debugging: the host's file system at /host, and udstrace in a cgroup
    // namespace of its own, where other processes' cgroup paths read relative to its own
    // cgroup. Senders are named from the cgroup ids the kernel records, found in the host's
    // hierarchy under /host. Receivers are named from their cgroup files, which then say
    // `/../ID` for a sibling under docker's cgroupfs driver (this docker's): no container
    // in that, so they are not asserted here (Kubernetes' `/../../podUID/ID` and the systemd
    // driver's `cri-containerd-ID.scope` still name theirs). Stopped as `docker stop` stops
    // it.
    let mut docker_args = privileges();
    docker_args.extend(NODE);
    capture_both(
        &setup,
        &Run {
            name: "image-node",
            docker_args,
            udstrace_args: &["--host-root", "/host"],
            signal: "TERM",
            receivers_named: false,
            by_pid: true,
        },
    );

    // The same layout, one container selected: `--container` finds its cgroup in the
    // host's hierarchy under /host and its name in docker's state there.
    let mut docker_args = privileges();
    docker_args.extend(NODE);
    capture_both(
        &setup,
        &Run {
            name: "image-node-container",
            docker_args,
            udstrace_args: &["--host-root", "/host", "--container", &server.name],
            signal: "TERM",
            receivers_named: false,
            by_pid: false,
        },
    );

    // Given neither the host's hierarchy nor a host root, `--container` says what it lacks.
    let mut args = vec!["run", "--rm"];
    args.extend(privileges());
    args.extend([
        "--pid=host",
        "--cgroupns=private",
        &image.0,
        "--container",
        &server.name,
    ]);
    let out = docker(&args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "udstrace: --container and --pod need the cgroup2 hierarchy, and none is mounted whole \
         here (in a container: mount the host's /sys/fs/cgroup, or give --host-root)"
    );
}

/// `--host-root` names a directory, or udstrace refuses with one line.
#[test]
fn host_root_must_be_a_directory() {
    let done = run(&["--host-root", "/nonexistent/udstrace", "-c", "1"]);
    assert_eq!(done.code, Some(2), "{:?}", done.stderr);
    assert_eq!(
        done.stderr,
        ["udstrace: --host-root /nonexistent/udstrace: not a directory"]
    );
}
