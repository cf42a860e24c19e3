//! Sockets known by their name, decoded by stock tshark from captures of real clients and
//! servers: Redis (redis-cli against redis-server), MariaDB (the mariadb client against
//! mariadbd), memcached, gRPC (ctr against containerd, with the Lua plugin), X11 on a display above 63
//! (xdpyinfo against Xvfb :77); and the text view's protocol summaries (Redis, MySQL, HTTP). Every
//! capture is limited to the test's own socket (`--path`): other captures run at the same time.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use udstrace_tests::{run, udstrace_bin, TempDir, Udstrace};

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
            start.elapsed() < Duration::from_mins(1),
            "{what} did not create {}",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a client; its standard output, after checking it succeeded.
fn client(cmd: &mut Command) -> String {
    let out: Output = cmd.stdin(Stdio::null()).output().expect("client");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Captures, to `file`, what the socket `sock` carries while `traffic` runs.
fn capture<T>(file: &Path, sock: &str, traffic: impl FnOnce() -> T) -> T {
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--path", sock]);
    let result = traffic();
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    assert_eq!(done.summary().1, 0, "nothing lost: {:?}", done.stderr);
    result
}

/// tshark's one-line view of a capture, for a failure's message.
fn listing(home: &Path, file: &Path) -> String {
    client(
        Command::new("tshark")
            .env("HOME", home)
            .args(["-n", "-r"])
            .arg(file),
    )
}

/// tshark's fields of the packets `filter` keeps; `home` holds its configuration (and the Lua
/// plugin, where installed).
fn fields(home: &Path, file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.env("HOME", home)
        .args(["-n", "-r"])
        .arg(file)
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    client(&mut cmd)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The text view of a capture (`udstrace -r`): the protocol summary of each line (what
/// follows `: ` after the length), `None` for a line without one.
fn summaries(file: &Path) -> Vec<Option<String>> {
    let out = run(&["-r", file.to_str().unwrap()]);
    assert!(out.success, "{:?}", out.stderr);
    summaries_of(&out.stdout)
}

/// The protocol summaries of text-view lines.
fn summaries_of(text: &str) -> Vec<Option<String>> {
    text.lines()
        .map(|l| {
            let after = l.split_once(", length ").expect("a packet line").1;
            after.split_once(": ").map(|(_, s)| s.to_string())
        })
        .collect()
}

fn hex(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// redis-cli against redis-server on a private socket named `redis.sock`: tshark decodes RESP
/// (the commands' arguments as bulk strings to port 6379, the replies back), and the text view
/// summarises each command and reply.
#[test]
fn redis_is_decoded_and_summarised() {
    let dir = TempDir::new("redis");
    let sock = dir.path("redis.sock");
    let _server = Guard(
        Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--daemonize", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    wait_for(&sock, "redis-server");
    let file = dir.path("redis.pcapng");
    let cli = |args: &[&str]| {
        client(Command::new("redis-cli").arg("-s").arg(&sock).args(args))
            .trim_end()
            .to_string()
    };
    // The live text view too, beside the file.
    let live = Udstrace::start(&["--path", sock.to_str().unwrap()]);
    let replies = capture(&file, sock.to_str().unwrap(), || {
        [
            cli(&["SET", "udstrace:key", "hello world"]),
            cli(&["GET", "udstrace:key"]),
            cli(&["INCRBY", "udstrace:counter", "5"]),
        ]
    });
    // Ground truth: what redis-cli printed.
    assert_eq!(replies, ["OK", "hello world", "5"]);

    let home = dir.path("home");
    let commands = fields(
        &home,
        &file,
        "resp && tcp.dstport == 6379",
        &["resp.bulk_string.value"],
    );
    let want = |words: &[&str]| vec![words.iter().map(|w| hex(w)).collect::<Vec<_>>().join(",")];
    assert_eq!(
        commands,
        [
            want(&["SET", "udstrace:key", "hello world"]),
            want(&["GET", "udstrace:key"]),
            want(&["INCRBY", "udstrace:counter", "5"]),
        ]
    );
    let answers = fields(
        &home,
        &file,
        "resp && tcp.srcport == 6379",
        &["resp.string", "resp.bulk_string.value", "resp.integer"],
    );
    assert_eq!(
        answers,
        [["OK", "", ""], ["", &hex("hello world"), ""], ["", "", "5"],]
    );

    let want = [
        "RESP: SET udstrace:key \"hello world\"",
        "RESP: +OK",
        "RESP: GET udstrace:key",
        "RESP: $11 \"hello world\"",
        "RESP: INCRBY udstrace:counter 5",
        "RESP: :5",
    ]
    .map(|s| Some(s.to_string()));
    assert_eq!(summaries(&file), want);
    let live = live.stop();
    assert!(live.success, "{:?}", live.stderr);
    assert_eq!(summaries_of(&live.stdout), want, "{}", live.stdout);
}

/// A memcached client (its text protocol, from Python) against memcached on `memcached.sock`:
/// tshark decodes the commands and answers.
#[test]
fn memcached_is_decoded() {
    let dir = TempDir::new("memcached");
    let sock = dir.path("memcached.sock");
    let _server = Guard(
        Command::new("memcached")
            .args(["-u", "root", "-s"])
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached"),
    );
    wait_for(&sock, "memcached");
    let file = dir.path("memcached.pcapng");
    let script = "import socket, sys\n\
        s = socket.socket(socket.AF_UNIX)\n\
        s.connect(sys.argv[1])\n\
        def ask(b, end):\n\
        \x20   s.sendall(b)\n\
        \x20   got = b''\n\
        \x20   while not got.endswith(end): got += s.recv(4096)\n\
        \x20   return got\n\
        print(ask(b'set udstrace 0 0 5\\r\\nhello\\r\\n', b'\\r\\n').decode().strip())\n\
        print(ask(b'get udstrace\\r\\n', b'END\\r\\n').decode().split()[:4])\n";
    let printed = capture(&file, sock.to_str().unwrap(), || {
        client(Command::new("python3").args(["-c", script]).arg(&sock))
    });
    assert_eq!(printed, "STORED\n['VALUE', 'udstrace', '0', '5']\n");

    let home = dir.path("home");
    let commands = fields(
        &home,
        &file,
        "memcache.command && tcp.dstport == 11211",
        &["memcache.command", "memcache.key"],
    );
    assert_eq!(commands, [["set", "udstrace"], ["get", "udstrace"]]);
    let answers = fields(
        &home,
        &file,
        "memcache.response && tcp.srcport == 11211",
        &["memcache.response"],
    );
    assert_eq!(
        answers.first().map(|a| a[0].as_str()),
        Some("STORED"),
        "{answers:?}"
    );
}

/// The mariadb client against mariadbd on a private data directory and socket `mysqld.sock`:
/// tshark decodes MySQL, the query as the client sent it; the text view summarises it.
#[test]
fn mariadb_query_is_decoded() {
    let dir = TempDir::new("mariadb");
    let data = dir.path("data");
    let out = Command::new("mariadb-install-db")
        .args(["--no-defaults", "--user=root", "--skip-test-db"])
        .arg(format!("--datadir={}", data.display()))
        .stdin(Stdio::null())
        .output()
        .expect("mariadb-install-db");
    assert!(
        out.status.success(),
        "mariadb-install-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sock = dir.path("mysqld.sock");
    let _server = Guard(
        Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", dir.path("pid").display()))
            .args(["--skip-networking", "--user=root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd"),
    );
    wait_for(&sock, "mariadbd");
    let query = "SELECT 1+1 AS udstrace_probe";
    let file = dir.path("mariadb.pcapng");
    let answer = capture(&file, sock.to_str().unwrap(), || {
        client(
            Command::new("mariadb")
                .args(["--no-defaults", "-u", "root", "-N", "-S"])
                .arg(&sock)
                .args(["-e", query]),
        )
    });
    assert_eq!(answer.trim(), "2");

    let home = dir.path("home");
    let queries = fields(&home, &file, "mysql.query", &["mysql.query", "tcp.dstport"]);
    assert_eq!(queries, [[query, "3306"]]);
    // The server's greeting, decoded from the other direction.
    let greeting = fields(
        &home,
        &file,
        "mysql.version && tcp.srcport == 3306",
        &["mysql.version"],
    );
    assert_eq!(greeting.len(), 1, "{greeting:?}");
    assert!(greeting[0][0].contains("MariaDB"), "{greeting:?}");

    // The text view: the greeting with the version tshark read, the login, the query as sent,
    // its one-column result, the client's goodbye.
    let lines: Vec<String> = summaries(&file).into_iter().flatten().collect();
    assert_eq!(
        lines.first(),
        Some(&format!("MySQL: Greeting {}", greeting[0][0])),
        "{lines:?}"
    );
    assert_eq!(
        lines.get(1).map(String::as_str),
        Some("MySQL: Login user=root")
    );
    let at = lines
        .iter()
        .position(|l| *l == format!("MySQL: Query \"{query}\""))
        .unwrap_or_else(|| panic!("no query line in {lines:?}"));
    assert!(
        lines[at + 1].starts_with("MySQL: ResultSet columns=1 "),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("MySQL: Quit"));
}

/// Installs udstrace's Lua plugin into the Wireshark configuration under `home`.
fn install_plugin(home: &Path) {
    std::fs::create_dir_all(home).unwrap();
    client(
        Command::new(udstrace_bin())
            .args(["extcap", "install"])
            .env("HOME", home),
    );
}

/// `ctr version` against a containerd of its own (private socket, root and state): with the
/// Lua plugin, tshark decodes the socket as HTTP/2 and the calls as gRPC, the reply holding the
/// server version ctr printed.
#[test]
fn containerd_grpc_is_decoded_with_the_plugin() {
    let dir = TempDir::new("containerd");
    let sock = dir.path("containerd.sock");
    let _server = Guard(
        Command::new("containerd")
            .arg("--address")
            .arg(&sock)
            .arg("--root")
            .arg(dir.path("root"))
            .arg("--state")
            .arg(dir.path("state"))
            .args(["--config", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("containerd"),
    );
    wait_for(&sock, "containerd");
    let file = dir.path("containerd.pcapng");
    let ctr = |sock: &PathBuf| {
        client(
            Command::new("ctr")
                .arg("--address")
                .arg(sock)
                .arg("version"),
        )
    };
    let printed = capture(&file, sock.to_str().unwrap(), || ctr(&sock));
    // "Server:\n  Version:  1.6.20~ds1\n...": the server's version, as ctr printed it.
    let server = printed.split_once("Server:").expect("a Server section").1;
    let version = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .expect("the server's version")
        .trim()
        .to_string();

    let home = dir.path("home");
    install_plugin(&home);
    let calls = fields(
        &home,
        &file,
        "grpc && http2.headers.path && tcp.dstport == 8000",
        &["http2.headers.path"],
    );
    assert!(
        calls
            .iter()
            .any(|c| c[0] == "/containerd.services.version.v1.Version/Version"),
        "{calls:?}\n{}\n{}",
        listing(&home, &file),
        run(&["-r", file.to_str().unwrap()]).stdout
    );
    let replies = fields(
        &home,
        &file,
        &format!("grpc && tcp.srcport == 8000 && frame contains \"{version}\""),
        &["frame.number"],
    );
    assert_eq!(replies.len(), 1, "the reply carrying {version}");
}

/// xdpyinfo against Xvfb on display 77, beyond Wireshark's 64 X11 ports: decoded as X11 on
/// port 6013 (6000 + 77 mod 64).
#[test]
fn x11_display_77_is_decoded() {
    let dir = TempDir::new("x11-77");
    let sock = "/tmp/.X11-unix/X77";
    let _ = std::fs::remove_file(sock);
    let _ = std::fs::remove_file("/tmp/.X77-lock");
    let _xvfb = Guard(
        Command::new("Xvfb")
            .args([":77", "-nolisten", "tcp", "-screen", "0", "800x600x24"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb"),
    );
    wait_for(Path::new(sock), "Xvfb");
    let file = dir.path("x11.pcapng");
    // Both names: xdpyinfo connects to the abstract one, `@/tmp/.X11-unix/X77`.
    let printed = capture(&file, "*/.X11-unix/X77", || {
        client(Command::new("xdpyinfo").args(["-display", ":77"]))
    });
    assert!(printed.contains("800x600"), "{printed}");

    let home = dir.path("home");
    let requests = fields(&home, &file, "x11 && tcp.dstport == 6013", &["x11.opcode"]);
    assert!(requests.len() > 3, "X11 requests decoded: {requests:?}");
    // xdpyinfo asks for extensions by name (QueryExtension, opcode 98).
    assert!(
        requests.iter().any(|r| r[0].split(',').any(|o| o == "98")),
        "{requests:?}"
    );
    let replies = fields(
        &home,
        &file,
        "x11 && tcp.srcport == 6013",
        &["frame.number"],
    );
    assert!(replies.len() > 3, "X11 replies decoded: {replies:?}");
}

/// The text view's HTTP summary: curl against an HTTP server on a docker-style socket; the
/// request line curl sent and the status line the server answered.
#[test]
fn http_is_summarised() {
    let dir = TempDir::new("http-summary");
    let sock = dir.path("docker.sock");
    let _server = Guard(
        Command::new("python3")
            .args(["-c", include_str!("../fixtures/unix_http_server.py")])
            .arg(&sock)
            .spawn()
            .expect("python3"),
    );
    wait_for(&sock, "the HTTP server");
    let file = dir.path("http.pcapng");
    let body = capture(&file, sock.to_str().unwrap(), || {
        client(
            Command::new("curl")
                .args(["-sS", "--unix-socket"])
                .arg(&sock)
                .arg("http://localhost/v1.43/containers/json?all=1"),
        )
    });
    assert_eq!(body, "{\"hello\": \"from a Unix socket\"}\n");
    let lines: Vec<String> = summaries(&file).into_iter().flatten().collect();
    assert_eq!(
        lines,
        [
            "HTTP: GET /v1.43/containers/json?all=1 HTTP/1.1",
            "HTTP: HTTP/1.0 200 OK",
        ]
    );
}
