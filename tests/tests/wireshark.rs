//! Wireshark integration with real tshark and real clients and servers: the extcap interface
//! (listed, live capture with options, errors), the Lua fields, and protocols decoded by stock
//! tshark: HTTP (curl against a server on a Unix socket), PostgreSQL (psql against a real
//! server) and X11 (xdpyinfo against Xvfb); the processes named in place of the addresses
//! (`tshark -N n`) and the `udstrace` configuration profile.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use std::{io::Read, os::unix::net::UnixStream, sync::mpsc};

use udstrace_tests::{own_pid, read_capture, udstrace_bin, TempDir, Udstrace};

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path, what: &str) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not create {}",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The HTTP server the demo uses too.
const HTTP_SERVER: &str = include_str!("../fixtures/unix_http_server.py");

/// Starts the HTTP server on `dir/docker.sock`; returns it and the socket path.
fn http_server(dir: &TempDir) -> (Guard, std::path::PathBuf) {
    let sock = dir.path("docker.sock");
    let server = Guard(
        Command::new("python3")
            .args(["-c", HTTP_SERVER])
            .arg(&sock)
            .spawn()
            .expect("python3"),
    );
    wait_for(&sock, "the HTTP server");
    (server, sock)
}

fn curl(sock: &Path, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(sock)
        .arg(url)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// tshark with `HOME` pointing at a private Wireshark configuration.
fn tshark(home: &Path) -> Command {
    let mut c = Command::new("tshark");
    c.env("HOME", home).stdin(Stdio::null());
    c
}

fn fields(home: &Path, file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = tshark(home);
    cmd.args(["-n", "-r"])
        .arg(file)
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Each of curl's connections holds one exchange: every request has its response in the same
/// TCP stream, and every response its request, except in the first stream when the capture
/// attached between curl's request and the server's answer. Rows start with `tcp.stream`.
fn assert_one_exchange_per_stream(requests: &[Vec<String>], responses: &[Vec<String>]) {
    let streams =
        |rows: &[Vec<String>]| -> Vec<u32> { rows.iter().map(|r| r[0].parse().unwrap()).collect() };
    let (asked, answered) = (streams(requests), streams(responses));
    let (of_requests, unasked): (Vec<u32>, Vec<u32>) =
        answered.iter().partition(|s| asked.contains(s));
    assert_eq!(of_requests, asked, "requests' streams against responses'");
    let first = asked.iter().chain(&answered).min().copied();
    assert!(
        unasked.is_empty() || (unasked.len() == 1 && unasked.first() == first.as_ref()),
        "responses without a request: {unasked:?} (requests' streams {asked:?})"
    );
}

/// Installs udstrace into a private Wireshark configuration.
fn install(home: &Path) {
    let out = Command::new(udstrace_bin())
        .args(["extcap", "install"])
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "{}/.config/wireshark/extcap/udstrace",
            home.display()
        )),
        "{text}"
    );
    assert!(text.contains("udstrace.lua"), "{text}");
}

/// After `extcap install`, tshark lists the interface, captures live through it with options
/// passed as `-o extcap.udstrace.*`, decodes curl's HTTP on a docker-style socket, and
/// filters on the Lua plugin's fields.
#[test]
fn extcap_live_capture_with_http_and_fields() {
    let dir = TempDir::new("extcap");
    let home = dir.path("home");
    std::fs::create_dir_all(&home).unwrap();
    install(&home);
    let list = tshark(&home).arg("-D").output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines()
            .any(|l| l.ends_with(". udstrace (Unix domain sockets (udstrace))")),
        "{list}"
    );

    let (server, sock) = http_server(&dir);
    let file = dir.path("live.pcapng");
    let sock_str = sock.to_str().unwrap().to_string();
    let mut capture = tshark(&home)
        .args([
            "-i",
            "udstrace",
            "-o",
            &format!("extcap.udstrace.path:{sock_str}"),
            "-a",
            "duration:12",
            "-w",
        ])
        .arg(&file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The interface needs a moment to load its programs: keep asking for 7 of the capture's
    // 12 seconds; the requests made before it listened are simply not in the file, and the
    // last ones end well before the capture does.
    for _ in 0..14 {
        assert_eq!(
            curl(&sock, "http://localhost/v1.43/info"),
            "{\"hello\": \"from a Unix socket\"}\n"
        );
        thread::sleep(Duration::from_millis(500));
    }
    let status = capture.wait().unwrap();
    assert!(status.success());

    let requests = fields(
        &home,
        &file,
        "http.request",
        &[
            "tcp.stream",
            "http.request.uri",
            "tcp.dstport",
            "udstrace.comm",
        ],
    );
    assert!(!requests.is_empty(), "no HTTP request decoded");
    for r in &requests {
        assert_eq!(r[1..], ["/v1.43/info", "80", "curl"]);
    }
    let responses = fields(
        &home,
        &file,
        "http.response",
        &[
            "tcp.stream",
            "http.response.code",
            "tcp.srcport",
            "udstrace.path",
        ],
    );
    for r in &responses {
        assert_eq!(
            r[1..],
            ["200".to_string(), "80".to_string(), sock_str.clone()]
        );
    }
    assert_one_exchange_per_stream(&requests, &responses);
    // Only the chosen socket was captured.
    let cap = read_capture(&file);
    for p in &cap.packets {
        assert!(
            p.meta("path") == Some(&sock_str) || p.meta("peer_path") == Some(&sock_str),
            "{}",
            p.comment
        );
    }
    // The plugin decodes every packet without error.
    let lua_errors = fields(
        &home,
        &file,
        "_ws.expert.message contains \"Lua Error\"",
        &["frame.number"],
    );
    assert!(lua_errors.is_empty(), "Lua errors in frames {lua_errors:?}");
    let inodes = fields(
        &home,
        &file,
        "udstrace.ino > 0 && udstrace.msg_len > 0",
        &["udstrace.ino"],
    );
    assert_eq!(inodes.len(), cap.packets.len());
    // Lua fields as display filters.
    let by_comm = fields(
        &home,
        &file,
        "udstrace.comm == \"curl\" && udstrace.type == \"stream\"",
        &["udstrace.pid"],
    );
    assert_eq!(by_comm.len(), requests.len());
    requests_named(&home, &file, server.0.id(), &sock_str, requests.len());
}

/// The names of the addresses came through the extcap pipe into tshark's `file`: each of its
/// `count` requests from a curl to the server (`server_pid`, from outside, on `sock`).
fn requests_named(home: &Path, file: &Path, server_pid: u32, sock: &str, count: usize) {
    let out = tshark(home)
        .args(["-N", "n", "-r"])
        .arg(file)
        .args(["-Y", "http.request", "-T", "fields"])
        .args([
            "-e",
            "ipv6.src_host",
            "-e",
            "ipv6.dst_host",
            "-e",
            "udstrace.pid",
        ])
        .output()
        .unwrap();
    let server_name = format!("python3[{server_pid}]:{sock}");
    let named = String::from_utf8(out.stdout).unwrap();
    assert_eq!(named.lines().count(), count);
    for line in named.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            f[..2],
            [&format!("curl[{}]", f[2]), &server_name],
            "{named}"
        );
    }
}

/// A fatal error reaches tshark as an error message; tshark does not hang.
#[test]
fn extcap_error_reaches_tshark() {
    let dir = TempDir::new("extcap-error");
    let home = dir.path("home");
    std::fs::create_dir_all(&home).unwrap();
    install(&home);
    let start = Instant::now();
    let out = tshark(&home)
        .args([
            "-i",
            "udstrace",
            "-o",
            "extcap.udstrace.pid:999999999",
            "-a",
            "duration:20",
            "-w",
        ])
        .arg(dir.path("x.pcapng"))
        .output()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "tshark waited for a capture that had failed"
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("udstrace: no such process: 999999999"),
        "{stderr}"
    );
}

/// psql against a real PostgreSQL server: the socket `.s.PGSQL.<port>` is decoded as pgsql,
/// queries included.
#[test]
fn postgresql_is_decoded() {
    let dir = TempDir::new("pgsql");
    let data = dir.path("data");
    let run_dir = dir.path("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir.0)
        .status()
        .unwrap();
    assert!(chown.success());
    let bin = Path::new("/usr/lib/postgresql/15/bin");
    let as_postgres = |program: &Path| {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(program)
            .stdin(Stdio::null());
        c
    };
    let ok = as_postgres(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "initdb");
    let _server = Guard(
        as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=", "-c", "port=5499", "-k"])
            .arg(&run_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sock = run_dir.join(".s.PGSQL.5499");
    wait_for(&sock, "postgres");

    let file = dir.path("pg.pcapng");
    let ud = Udstrace::start(&[
        "-w",
        file.to_str().unwrap(),
        "--path",
        sock.to_str().unwrap(),
    ]);
    let query = "SELECT 'udstrace probe' AS answer";
    let out = as_postgres(Path::new("/usr/bin/psql"))
        .arg("-h")
        .arg(&run_dir)
        .args(["-p", "5499", "-U", "postgres", "-At", "-c", query])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "udstrace probe"
    );
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);

    let home = dir.path("home");
    let queries = fields(&home, &file, "pgsql.query", &["pgsql.query", "tcp.dstport"]);
    assert_eq!(queries, vec![vec![query.to_string(), "5432".to_string()]]);
    let rows = fields(
        &home,
        &file,
        "pgsql.type == \"Data row\"",
        &["pgsql.val.data"],
    );
    assert_eq!(rows.len(), 1, "one data row");
    // The text view's summaries: the query as psql sent it, the server's one row.
    let text = udstrace_tests::run(&["-r", file.to_str().unwrap()]).stdout;
    assert!(
        text.lines()
            .any(|l| l.ends_with(&format!(": PGSQL: Query \"{query}\""))),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with(
            ": PGSQL: RowDescription, DataRow, CommandComplete \"SELECT 1\", ReadyForQuery"
        )),
        "{text}"
    );
}

/// An X client against Xvfb: the display socket is decoded as X11.
#[test]
fn x11_is_decoded() {
    let dir = TempDir::new("x11");
    let display = 42;
    let sock = format!("/tmp/.X11-unix/X{display}");
    let _ = std::fs::remove_file(&sock);
    let _xvfb = Guard(
        Command::new("Xvfb")
            .args([
                &format!(":{display}"),
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "640x480x24",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb"),
    );
    wait_for(Path::new(&sock), "Xvfb");
    let file = dir.path("x11.pcapng");
    let ud = Udstrace::start(&[
        "-w",
        file.to_str().unwrap(),
        "--path",
        "*/.X11-unix/X42",
        "--comm",
        "xdpyinfo",
    ]);
    let out = Command::new("xdpyinfo")
        .args(["-display", &format!(":{display}")])
        .output()
        .expect("xdpyinfo");
    assert!(
        out.status.success(),
        "xdpyinfo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("640x480"));
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);

    let home = dir.path("home");
    let requests = fields(&home, &file, "x11", &["tcp.dstport", "x11.opcode"]);
    assert!(requests.len() > 3, "X11 requests decoded: {requests:?}");
    assert!(requests.iter().all(|r| r[0] == "6042"), "{requests:?}");
    // xdpyinfo asks for extensions by name (QueryExtension, opcode 98).
    assert!(
        requests.iter().any(|r| r[1].split(',').any(|o| o == "98")),
        "{requests:?}"
    );
}

/// `-w -` streams: a packet reaches the reader while udstrace is still running (it flushes on
/// a short timer, not at exit), as `udstrace -w - | wireshark -k -i -` needs.
#[test]
fn pcapng_on_stdout_streams_live() {
    let mut ud = Udstrace::start(&["-w", "-", "-p", &own_pid()]);
    let mut out = ud.take_stdout();
    let (tx, rx) = mpsc::channel();
    let marker = b"streamed-while-running";
    thread::spawn(move || {
        // Read pcapng blocks as they come; report the first packet holding the marker.
        let mut header = [0u8; 8];
        while out.read_exact(&mut header).is_ok() {
            let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len - 8];
            if out.read_exact(&mut body).is_err() {
                break;
            }
            let block_type = u32::from_le_bytes(header[..4].try_into().unwrap());
            if block_type == 6 && body.windows(marker.len()).any(|w| w == marker) {
                let _ = tx.send(());
                break;
            }
        }
    });
    let (mut a, _b) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut a, marker).unwrap();
    let arrived = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    assert!(arrived, "the packet did not reach standard output");
    assert!(
        ud.running(),
        "udstrace was still capturing when the packet arrived"
    );
    assert!(ud.stop().success);
}

/// Control data and receives as Wireshark fields: a pipe passed with `SCM_RIGHTS` and
/// credentials, and the receive of that message (inbound, `udstrace.dir == "recv"`).
#[test]
fn control_data_and_receives_as_fields() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("lua-fields");
    let home = dir.path("home");
    std::fs::create_dir_all(&home).unwrap();
    install(&home);
    let file = dir.path("fields.pcapng");
    let mut sender = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, os, array, struct, sys\n\
             sys.stdin.readline()\n\
             a, b = socket.socketpair()\n\
             r, w = os.pipe()\n\
             cred = struct.pack('iII', os.getpid(), os.getuid(), os.getgid())\n\
             a.sendmsg([b'a pipe for you'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, \
             array.array('i', [r])), (socket.SOL_SOCKET, socket.SCM_CREDENTIALS, cred)])\n\
             b.recvmsg(100, 100)\n\
             print(r, os.fstat(r).st_ino, flush=True)\n\
             sys.stdin.readline()\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sender.id().to_string();
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "-p", &pid, "--recv"]);
    let mut stdin = sender.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"go\n").unwrap();
    let mut line = String::new();
    BufReader::new(sender.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (fd, ino) = line.trim().split_once(' ').unwrap();
    let done = ud.stop();
    let _ = std::io::Write::write_all(&mut stdin, b"end\n");
    let _ = sender.wait();
    assert!(done.success, "{:?}", done.stderr);

    let sent = fields(
        &home,
        &file,
        "udstrace.fds",
        &[
            "udstrace.fds",
            "udstrace.cred_pid",
            "udstrace.cred_uid",
            "udstrace.pid",
        ],
    );
    assert_eq!(
        sent,
        [[
            format!("{fd}:pipe:[{ino}]"),
            pid.clone(),
            "0".into(),
            pid.clone()
        ]]
    );
    let received = fields(
        &home,
        &file,
        "udstrace.dir == \"recv\"",
        &[
            "udstrace.pid",
            "frame.packet_flags_direction",
            "tcp.payload",
        ],
    );
    assert_eq!(
        received,
        [[
            pid,
            "0x00000001".to_string(),
            "61207069706520666f7220796f75".to_string()
        ]]
    );
}

/// Name resolution blocks name the processes at both ends of curl's conversations with a
/// server, in tshark's packet fields (one pass: each name arrives before its first packet)
/// and conversation statistics; the `udstrace` profile that `extcap install` writes loads in
/// tshark with its columns, and a profile folder planted as a link is refused.
#[test]
fn processes_named_in_place_of_addresses() {
    let dir = TempDir::new("names");
    let (server, sock) = http_server(&dir);
    let server_pid = server.0.id();
    let sock_str = sock.to_str().unwrap().to_string();
    let file = dir.path("names.pcapng");
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--path", &sock_str]);
    let mut curl_pids = Vec::new();
    for url in ["http://localhost/one", "http://localhost/two"] {
        let child = Command::new("curl")
            .args(["-sS", "--unix-socket", &sock_str, url])
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        curl_pids.push(child.id());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"{\"hello\": \"from a Unix socket\"}\n");
    }
    assert!(ud.stop().success);

    let server_name = format!("python3[{server_pid}]:{sock_str}");
    assert!(server_name.len() <= 63, "{server_name} is cut by Wireshark");
    let home = dir.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = tshark(&home)
        .args(["-N", "n", "-r"])
        .arg(&file)
        .args(["-T", "fields", "-e", "ipv6.src_host", "-e", "ipv6.dst_host"])
        .args(["-e", "tcp.srcport", "-e", "tcp.len"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<Vec<String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect();
    // Each curl sends one request and reads the answer: packets both ways, all named.
    for pid in &curl_pids {
        let curl = format!("curl[{pid}]");
        let sent = rows
            .iter()
            .filter(|r| r[0] == curl && r[1] == server_name)
            .count();
        let answered = rows
            .iter()
            .filter(|r| r[0] == server_name && r[1] == curl)
            .count();
        assert_eq!(sent, 1, "{curl}: {rows:?}");
        assert!(answered >= 1, "{curl}: {rows:?}");
    }
    let cap = read_capture(&file);
    assert_eq!(rows.len(), cap.packets.len(), "{rows:?}");

    // Conversations statistics: one per curl, between the two processes.
    let out = tshark(&home)
        .args(["-N", "n", "-q", "-z", "conv,ipv6", "-r"])
        .arg(&file)
        .output()
        .unwrap();
    let conv = String::from_utf8(out.stdout).unwrap();
    for pid in &curl_pids {
        assert!(
            conv.lines().any(|l| {
                let l: Vec<&str> = l.split_whitespace().collect();
                l.len() > 3 && l[..3] == [&format!("curl[{pid}]"), "<->", &server_name]
            }),
            "{conv}"
        );
    }

    let curl_ino = cap.packets[0].meta("ino").unwrap();
    install(&home);
    profile_shows_processes(&home, &file, curl_pids[0], curl_ino, &server_name);
    linked_profile_is_refused(&dir, &home);
}

/// The `udstrace` profile installed in `home`: its columns, name resolution on, and its
/// packet list of `file` with the request of curl `curl_pid` from socket `curl_ino`.
fn profile_shows_processes(
    home: &Path,
    file: &Path,
    curl_pid: u32,
    curl_ino: &str,
    server_name: &str,
) {
    use std::os::unix::fs::PermissionsExt;
    let prefs = home.join(".config/wireshark/profiles/udstrace/preferences");
    let mode = std::fs::metadata(&prefs).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let out = tshark(home)
        .args(["-G", "currentprefs", "-C", "udstrace"])
        .output()
        .unwrap();
    let current = String::from_utf8(out.stdout).unwrap();
    assert!(
        current.contains("\nnameres.network_name: TRUE\n"),
        "{current}"
    );
    let columns = current
        .split("\ngui.column.format: \n")
        .nth(1)
        .expect("the profile's columns")
        .split("\n\n")
        .next()
        .unwrap();
    let titles: Vec<&str> = columns
        .lines()
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Time", "Sender", "Receiver", "Socket", "Type", "Protocol", "Info"]
    );
    // Its packet list: sender, receiver, socket inode, type, protocol.
    let out = tshark(home)
        .args(["-C", "udstrace", "-r"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).unwrap();
    let request = list
        .lines()
        .find(|l| l.contains(&format!("curl[{curl_pid}] ")))
        .unwrap_or_else(|| panic!("{list}"));
    let words: Vec<&str> = request.split_whitespace().collect();
    assert_eq!(
        words[1..8],
        [
            &format!("curl[{curl_pid}]"),
            "→",
            server_name,
            curl_ino,
            "stream",
            "HTTP",
            "GET"
        ],
        "{list}"
    );
}

/// A profile folder that is a link elsewhere is refused, its target left alone.
fn linked_profile_is_refused(dir: &TempDir, home: &Path) {
    let prefs = home.join(".config/wireshark/profiles/udstrace/preferences");
    let elsewhere = dir.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let profile = prefs.parent().unwrap();
    std::fs::remove_dir_all(profile).unwrap();
    std::os::unix::fs::symlink(&elsewhere, profile).unwrap();
    let out = Command::new(udstrace_bin())
        .args(["extcap", "install"])
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
}
