//! D-Bus message by message: a real dbus-daemon on a private socket, real clients (dbus-send,
//! busctl, and a small raw D-Bus client in python3 that passes a descriptor and is joined
//! mid-conversation), checked with stock tshark against what dbus-monitor and the clients saw.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use udstrace_tests::{udstrace_bin, TempDir, Udstrace};

/// A dbus-daemon (session configuration) listening on `path`; killed on drop.
struct Bus {
    child: Child,
    address: String,
}

impl Bus {
    fn start(path: &Path) -> Self {
        let address = format!("unix:path={}", path.display());
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon (Debian package dbus)");
        // It prints its address once it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with(&address), "dbus-daemon said {line:?}");
        Self { child, address }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tshark with the plugin installed under `home`: one row of `fields` per packet of `filter`.
fn fields(home: &Path, file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.env("HOME", home)
        .stdin(Stdio::null())
        .args(["-n", "-r"])
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

fn install(home: &Path) {
    std::fs::create_dir_all(home).unwrap();
    let out = Command::new(udstrace_bin())
        .args(["extcap", "install"])
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `busctl call ... GetNameOwner s org.freedesktop.DBus` on the bus at `address`.
fn get_name_owner(address: &str) -> String {
    run(Command::new("busctl").args([
        &format!("--address={address}"),
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "GetNameOwner",
        "s",
        "org.freedesktop.DBus",
    ]))
}

/// dbus-send and busctl over the bus: every message they exchanged with it is one packet of
/// the D-Bus interface, with the member, path, arguments and both processes; the messages are
/// those dbus-monitor saw routed to and from them; `-r` prints a line per message.
#[test]
fn bus_clients_message_by_message() {
    let dir = TempDir::new("dbus-bus");
    let home = dir.path("home");
    install(&home);
    let sock = dir.path("bus");
    let bus = Bus::start(&sock);
    let file = dir.path("bus.pcapng");
    let monitor_file = dir.path("monitor.pcap");
    let mut monitor = Command::new("dbus-monitor")
        .args(["--address", &bus.address, "--pcap"])
        .stdout(std::fs::File::create(&monitor_file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ud = Udstrace::start(&[
        "-w",
        file.to_str().unwrap(),
        "--path",
        sock.to_str().unwrap(),
    ]);
    // The monitor is in place once it has written the pcap header and its first message.
    let listed = run(Command::new("dbus-send").args([
        &format!("--bus={}", bus.address),
        "--print-reply",
        "--dest=org.freedesktop.DBus",
        "/",
        "org.freedesktop.DBus.ListNames",
    ]));
    let owner = get_name_owner(&bus.address);
    assert_eq!(owner.trim(), "s \"org.freedesktop.DBus\"");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let done = ud.stop();
    let _ = monitor.kill();
    let _ = monitor.wait();
    assert!(done.success, "{:?}", done.stderr);

    let clients = "(udstrace.comm == \"dbus-send\" || udstrace.comm == \"busctl\" || \
                   udstrace.peer_comm == \"dbus-send\" || udstrace.peer_comm == \"busctl\")";
    let ours = fields(
        &home,
        &file,
        &format!("dbus && {clients}"),
        &[
            "frame.interface_id",
            "udstrace.comm",
            "udstrace.peer_comm",
            "dbus.message_type",
            "dbus.member",
            "dbus.serial",
            "dbus.path",
            "dbus.type.string",
            "udstrace.dbus",
        ],
    );
    for row in &ours {
        assert_eq!(row[0], "1", "on the D-Bus interface: {row:?}");
        assert_eq!(row[8], "msg", "{row:?}");
    }
    let find = |member: &str| {
        ours.iter()
            .find(|r| r[4] == member)
            .unwrap_or_else(|| panic!("no {member} in {ours:#?}"))
    };
    let list = find("ListNames");
    assert_eq!(
        (&*list[1], &*list[2], &*list[3], &*list[6]),
        ("dbus-send", "dbus-daemon", "1", "/")
    );
    let get = find("GetNameOwner");
    assert_eq!(
        (&*get[1], &*get[2], &*get[7]),
        ("busctl", "dbus-daemon", "org.freedesktop.DBus")
    );
    // The ListNames reply's arguments: the names dbus-send printed.
    let reply = ours
        .iter()
        .find(|r| r[1] == "dbus-daemon" && r[2] == "dbus-send" && r[7].contains(":1."))
        .unwrap_or_else(|| panic!("no ListNames reply in {ours:#?}"));
    for name in reply[7].split(',') {
        assert!(
            listed.contains(&format!("string \"{name}\"")),
            "{name} in {listed}"
        );
    }
    // Filters on the plugin's fields select the same messages.
    let by_comm = fields(
        &home,
        &file,
        "dbus && udstrace.comm == \"busctl\"",
        &["dbus.member"],
    );
    assert_eq!(
        by_comm.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["Hello", "GetNameOwner"]
    );

    against_monitor(&home, &monitor_file, &ours);
    text_view(&home, &file);
}

/// Our D-Bus packets `ours` (their fields 3-5: type, member, serial) against what dbus-monitor
/// recorded in `monitor_file`.
fn against_monitor(home: &Path, monitor_file: &Path, ours: &[Vec<String>]) {
    // Ground truth: what the bus routed to and from the two clients (their unique names),
    // as dbus-monitor recorded it, less the NameLost signals the bus sends as a client goes
    // (never written: the client has gone).
    let monitored = fields(
        home,
        monitor_file,
        "dbus",
        &[
            "dbus.message_type",
            "dbus.member",
            "dbus.serial",
            "dbus.sender",
            "dbus.destination",
        ],
    );
    let names: Vec<String> = ours
        .iter()
        .filter(|r| r[3] == "2" && r[4].is_empty() && r[7].starts_with(":1."))
        .filter(|r| !r[7].contains(','))
        .map(|r| r[7].clone())
        .collect();
    assert_eq!(names.len(), 2, "the two Hello replies: {ours:#?}");
    let expected: Vec<(String, String, String)> = monitored
        .iter()
        .filter(|r| names.contains(&r[3]) || names.contains(&r[4]))
        .filter(|r| r[1] != "NameLost")
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect();
    let seen: Vec<(String, String, String)> = ours
        .iter()
        .map(|r| (r[3].clone(), r[4].clone(), r[5].clone()))
        .collect();
    // Each direction in order; the two directions may interleave differently (a client's call
    // and the bus's signal to it cross), so they are compared apart: calls (type 1) go from the
    // clients to the bus, replies and signals from the bus to the clients.
    let direction =
        |rows: &[(String, String, String)], calls: bool| -> Vec<(String, String, String)> {
            rows.iter()
                .filter(|r| (r.0 == "1") == calls)
                .cloned()
                .collect()
        };
    for calls in [true, false] {
        assert_eq!(
            direction(&seen, calls),
            direction(&expected, calls),
            "ours against dbus-monitor's ({})",
            if calls {
                "calls"
            } else {
                "replies and signals"
            }
        );
    }
    assert_eq!(seen.len(), 10);
    assert_eq!(expected.len(), 10);
}

/// `-r` of `file`: one line per message of the D-Bus interface.
fn text_view(home: &Path, file: &Path) {
    // The text view: one line per message.
    let read = Command::new(udstrace_bin())
        .arg("-r")
        .arg(file)
        .output()
        .unwrap();
    assert!(read.status.success());
    let text = String::from_utf8(read.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("method call org.freedesktop.DBus.ListNames"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(" dbus-send[") && line.contains("] -> dbus-daemon["),
        "{line}"
    );
    assert!(line.contains(" path=/ dest=org.freedesktop.DBus"), "{line}");
    let message_lines = text
        .lines()
        .filter(|l| {
            ["method call", "method return", "signal", "error"]
                .iter()
                .any(|k| l.contains(&format!("] {k} ")))
        })
        .count();
    let all_dbus = fields(home, file, "dbus", &["frame.number"]).len();
    assert_eq!(message_lines, all_dbus, "{text}");
}

/// The raw client: authenticates, says Hello, then writes the first `split` bytes of a
/// GetId call and waits; on a line from standard input writes the rest, a second GetId, and a
/// third call that passes a pipe (`h`, UNIX_FDS 1); prints each reply's serial and type.
const CLIENT: &str = r#"
import os, socket, struct, sys
def pad(b, n): return b + b"\0" * (-len(b) % n)
def s(v): v = v.encode(); return struct.pack("<I", len(v)) + v + b"\0"
def field(code, sig, val): return bytes([code, 1, ord(sig), 0]) + val
def msg(serial, member, sig=None, body=b"", fds=0):
    fl = [field(1, "o", s("/org/freedesktop/DBus")), field(2, "s", s("org.freedesktop.DBus")),
          field(3, "s", s(member)), field(6, "s", s("org.freedesktop.DBus"))]
    if sig: fl.append(field(8, "g", bytes([len(sig)]) + sig.encode() + b"\0"))
    if fds: fl.append(field(9, "u", struct.pack("<I", fds)))
    arr = b""
    for f in fl: arr = pad(arr, 8) + f
    return pad(struct.pack("<BBBBIII", ord("l"), 1, 0, 1, len(body), serial, len(arr)) + arr, 8) + body
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
f = sock.makefile("rb")
def line(): return f.readline()
def read_msg():
    head = f.read(16)
    body_len, serial, fields_len = struct.unpack("<III", head[4:16])
    rest = f.read(((16 + fields_len + 7) & ~7) - 16 + body_len)
    return head[1], head + rest
sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
assert line().startswith(b"OK")
sock.sendall(b"NEGOTIATE_UNIX_FD\r\n")
assert line().startswith(b"AGREE_UNIX_FD")
sock.sendall(b"BEGIN\r\n" + msg(1, "Hello"))
read_msg(); read_msg()
split = int(sys.argv[2])
big = msg(2, "GetId", "s", s("x" * int(sys.argv[3])))
sock.sendall(big[:split])
print("ready", len(big), flush=True)
sys.stdin.readline()
sock.sendall(big[split:])
sock.sendall(msg(3, "GetId"))
r, w = os.pipe()
sock.sendmsg([msg(4, "GetId", "h", struct.pack("<I", 0), fds=1)],
             [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))])
for _ in range(3):
    kind, m = read_msg()
    print("reply", kind, flush=True)
print("done", flush=True)
sys.stdin.readline()
"#;

struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn start(sock: &Path, split: usize, arg_len: usize) -> (Self, usize) {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", CLIENT])
            .arg(sock)
            .arg(split.to_string())
            .arg(arg_len.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut me = Self {
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stdin,
        };
        let ready = me.line();
        let len = ready
            .strip_prefix("ready ")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (me, len)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    /// Lets it send its calls; its replies' types (2: return, 3: error).
    fn go(&mut self) -> Vec<String> {
        self.stdin.write_all(b"go\n").unwrap();
        let mut replies = Vec::new();
        loop {
            let line = self.line();
            let Some(kind) = line.trim().strip_prefix("reply ") else {
                assert_eq!(line.trim(), "done");
                return replies;
            };
            replies.push(kind.to_string());
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"end\n");
        let _ = self.child.wait();
    }
}

/// A capture that begins in the middle of a message of a connection already authenticated
/// (the socket named D-Bus with `--decode PATH=dbus`):
/// that message is only in the stream's packets; the next one says `dbus=resync:N` (N the
/// bytes of the first one the capture saw); the descriptor a call passes is its `fds=`, and its
/// UNIX_FDS header field says 1.
#[test]
fn mid_conversation_start_and_a_passed_descriptor() {
    let dir = TempDir::new("dbus-mid");
    let home = dir.path("home");
    install(&home);
    let sock = dir.path("bus");
    let _bus = Bus::start(&sock);
    let split = 40;
    let (mut client, big_len) = Client::start(&sock, split, 10);
    let pid = client.child.id().to_string();
    let file = dir.path("mid.pcapng");
    // The capture does not see the authentication: the socket is named D-Bus.
    let decode = format!("{}=dbus", sock.display());
    let ud = Udstrace::start(&[
        "-w",
        file.to_str().unwrap(),
        "--path",
        sock.to_str().unwrap(),
        "--decode",
        &decode,
    ]);
    let replies = client.go();
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    assert_eq!(replies.len(), 3);

    let from_client = fields(
        &home,
        &file,
        &format!("dbus && udstrace.pid == {pid}"),
        &[
            "dbus.serial",
            "dbus.member",
            "udstrace.dbus",
            "dbus.unix_fds",
            "udstrace.fds",
        ],
    );
    assert_eq!(from_client.len(), 2, "{from_client:#?}");
    let tail = big_len - split;
    assert_eq!(
        from_client[0][..3],
        ["3", "GetId", &format!("resync:{tail}")]
    );
    assert_eq!(from_client[1][..3], ["4", "GetId", "msg"]);
    assert_eq!(from_client[1][3], "1");
    assert!(
        from_client[1][4].starts_with("3:pipe:[") || from_client[1][4].contains(":pipe:["),
        "{from_client:?}"
    );
    assert!(from_client[0][4].is_empty(), "{from_client:?}");
    // The tail of the call the capture joined is in the stream's packets.
    let raw = fields(
        &home,
        &file,
        &format!("!udstrace.dbus && udstrace.pid == {pid}"),
        &["tcp.len"],
    );
    assert_eq!(raw[0], [tail.to_string()]);
    // The bus's replies: one message each, as the client read them.
    let to_client = fields(
        &home,
        &file,
        &format!("dbus && udstrace.peer_pid == \"{pid}\""),
        &["dbus.message_type", "dbus.reply_serial", "udstrace.comm"],
    );
    let kinds: Vec<&str> = to_client.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(kinds, replies, "{to_client:?}");
    let serials: Vec<&str> = to_client.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(serials, ["2", "3", "4"]);
    assert!(to_client.iter().all(|r| r[2] == "dbus-daemon"));
}

/// A message cut by `-s` (its bytes lost to the capture): it is not on the D-Bus interface,
/// and the message after it says how many bytes were skipped before it was found again.
#[test]
fn cut_message_resynchronises() {
    let dir = TempDir::new("dbus-cut");
    let home = dir.path("home");
    install(&home);
    let sock = dir.path("bus");
    let _bus = Bus::start(&sock);
    let file = dir.path("cut.pcapng");
    let ud = Udstrace::start(&[
        "-w",
        file.to_str().unwrap(),
        "--path",
        sock.to_str().unwrap(),
        "-s",
        "1000",
    ]);
    // The whole conversation is captured; the first GetId carries a 5000-byte argument.
    let (mut client, big_len) = Client::start(&sock, 0, 5000);
    let pid = client.child.id().to_string();
    let replies = client.go();
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    assert_eq!(replies.len(), 3);
    let from_client = fields(
        &home,
        &file,
        &format!("dbus && udstrace.pid == {pid}"),
        &["dbus.serial", "dbus.member", "udstrace.dbus"],
    );
    let captured = fields(
        &home,
        &file,
        &format!("udstrace.payload == \"snaplen\" && udstrace.pid == {pid}"),
        &["tcp.len", "frame.cap_len"],
    );
    assert_eq!(captured.len(), 1, "{captured:?}");
    assert_eq!(captured[0][0], big_len.to_string());
    let kept: usize = captured[0][1].parse::<usize>().unwrap() - 60;
    let serials: Vec<&str> = from_client.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(serials, ["1", "3", "4"], "{from_client:?}");
    assert_eq!(from_client[0][2], "msg");
    assert_eq!(from_client[1][2], format!("resync:{kept}"));
}
