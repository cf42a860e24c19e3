//! Kernel-side filters keep exactly the traffic they promise: `--comm`, `--uid`, `--type`,
//! and `-p` with and without `--follow`. Real processes with distinct names, users and
//! parents send tagged messages on stream and datagram socketpairs; the capture must hold
//! the wanted tags and no other.

use std::{
    collections::BTreeSet,
    io::Write,
    process::{Command, Stdio},
};

use udstrace_tests::{read_capture, TempDir, Udstrace};

/// Sends `TAG:stream` on a stream socketpair and `TAG:dgram` on a datagram one.
const TALKER: &str = r#"
import socket, sys
tag = sys.argv[1]
for kind, name in ((socket.SOCK_STREAM, "stream"), (socket.SOCK_DGRAM, "dgram")):
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    a.send(f"{tag}:{name}".encode())
    b.recv(100)
"#;

/// A talker program called `name` (its `comm`): a symbolic link to python3, whose name the
/// kernel takes as the command name.
fn talker(dir: &TempDir, name: &str) -> std::path::PathBuf {
    let link = dir.path(name);
    if !link.exists() {
        std::os::unix::fs::symlink("/usr/bin/python3", &link).unwrap();
        std::fs::write(dir.path("talker.py"), TALKER).unwrap();
    }
    link
}

fn talk(dir: &TempDir, name: &str, tag: &str, user: Option<u32>) {
    let prog = talker(dir, name);
    let script = dir.path("talker.py");
    let status = match user {
        None => Command::new(&prog).arg(&script).arg(tag).status(),
        Some(uid) => Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ])
            .arg(&prog)
            .arg(&script)
            .arg(tag)
            .status(),
    }
    .unwrap();
    assert!(status.success(), "{name} {tag}");
}

/// The tags captured (payloads of the form `TAG:kind`).
fn tags(file: &std::path::Path) -> BTreeSet<String> {
    read_capture(file)
        .packets
        .iter()
        .filter_map(|p| std::str::from_utf8(p.payload()).ok())
        .filter(|s| s.contains(':'))
        .map(str::to_string)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

fn capture(dir: &TempDir, name: &str, args: &[&str], traffic: impl FnOnce()) -> BTreeSet<String> {
    let file = dir.path(name);
    let mut all = vec!["-w", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let ud = Udstrace::start(&all);
    traffic();
    assert!(ud.stop().success);
    tags(&file)
}

#[test]
fn comm_uid_and_type_filters() {
    let dir = TempDir::new("filters");
    // Readable by the unprivileged talker.
    std::fs::set_permissions(
        dir.path(""),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let both = || {
        talk(&dir, "talker-a", "a", None);
        talk(&dir, "talker-b", "b", None);
    };
    assert_eq!(
        capture(&dir, "comm.pcapng", &["--comm", "talker-a"], both),
        set(&["a:stream", "a:dgram"])
    );
    assert_eq!(
        capture(
            &dir,
            "type.pcapng",
            &["--comm", "talker-a", "--comm", "talker-b", "--type", "dgram"],
            both
        ),
        set(&["a:dgram", "b:dgram"])
    );
    assert_eq!(
        capture(
            &dir,
            "uid.pcapng",
            &["--uid", "nobody", "--comm", "talker-a"],
            || {
                talk(&dir, "talker-a", "root", None);
                talk(&dir, "talker-a", "nobody", Some(65534));
            }
        ),
        set(&["nobody:stream", "nobody:dgram"])
    );
}

/// `-p SHELL` alone misses what the shell's children say; with `--follow` it has it.
#[test]
fn follow_takes_in_children_forked_later() {
    let dir = TempDir::new("follow");
    let prog = talker(&dir, "talker-c");
    let script = dir.path("talker.py");
    for (name, follow, expected) in [
        ("nofollow.pcapng", false, set(&[])),
        ("follow.pcapng", true, set(&["child:stream", "child:dgram"])),
    ] {
        // A shell that waits, then runs the talker as its child (and a grandchild through
        // a second shell).
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(r#"read go; "$0" "$1" child; sh -c '"$0" "$1" grandchild' "$0" "$1""#)
            .arg(&prog)
            .arg(&script)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = shell.id().to_string();
        let file = dir.path(name);
        let mut args = vec!["-w", file.to_str().unwrap(), "-p", &pid];
        if follow {
            args.push("--follow");
        }
        let ud = Udstrace::start(&args);
        shell.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(shell.wait().unwrap().success());
        assert!(ud.stop().success);
        let mut expected = expected;
        if follow {
            expected.extend(set(&["grandchild:stream", "grandchild:dgram"]));
        }
        assert_eq!(tags(&file), expected, "{name}");
    }
}

#[test]
fn filter_errors_are_one_line() {
    for (args, expected) in [
        (&["--follow"][..], "--follow needs -p"),
        (
            &["--uid", "no-such-user-here"][..],
            "no such user: no-such-user-here",
        ),
        (
            &["--pod", "foo"][..],
            "invalid --pod `foo`: expected NAMESPACE/NAME",
        ),
        (
            &["--pod", "kube-system/"][..],
            "invalid --pod `kube-system/`: expected NAMESPACE/NAME",
        ),
        (
            &["--container", ""][..],
            "invalid --container ``: expected a container's name or id",
        ),
        (&["--path", ""][..], "--path needs a path, @name or glob"),
    ] {
        let out = udstrace_tests::run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {:?}", out.stderr);
        let stderr = out.stderr.join("\n");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(out.stderr.len(), 1, "{stderr}");
    }
}

/// `--path` in the kernel by name: an abstract name (which has no file), and a datagram
/// socket's path. A datagram sent by address has no peer when it is sent: the kernel leaves
/// it to userspace, which matches the destination's name; one connected to the path is
/// matched in the kernel.
#[test]
fn path_filter_by_abstract_name_and_by_destination() {
    let dir = TempDir::new("path-names");
    let name = format!("udstrace-test-{}", std::process::id());
    let (dgram, elsewhere) = (dir.path("dgram.sock"), dir.path("elsewhere.sock"));
    let script = "import socket, sys\n\
         name, dgram, elsewhere = sys.argv[1:4]\n\
         def pair(addr):\n\
         \x20   s = socket.socket(socket.AF_UNIX); s.bind(addr); s.listen()\n\
         \x20   c = socket.socket(socket.AF_UNIX); c.connect(addr)\n\
         \x20   return c, s.accept()[0]\n\
         c, conn = pair('\\0' + name)\n\
         c.sendall(b'to-abstract'); conn.recv(100)\n\
         conn.sendall(b'from-abstract'); c.recv(100)\n\
         c, conn = pair('\\0' + name + '-other')\n\
         c.sendall(b'other-abstract'); conn.recv(100)\n\
         d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind(dgram)\n\
         e = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); e.bind(elsewhere)\n\
         u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         u.sendto(b'dgram-to-path', dgram); d.recv(100)\n\
         u.sendto(b'dgram-elsewhere', elsewhere); e.recv(100)\n\
         v = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); v.connect(dgram)\n\
         v.send(b'connected-dgram'); d.recv(100)\n";
    let traffic = || {
        let _ = std::fs::remove_file(&dgram);
        let _ = std::fs::remove_file(&elsewhere);
        let status = Command::new("/usr/bin/python3")
            .args(["-c", script, &name])
            .arg(&dgram)
            .arg(&elsewhere)
            .status()
            .unwrap();
        assert!(status.success());
    };
    let payloads = |file: &std::path::Path| -> BTreeSet<String> {
        read_capture(file)
            .packets
            .iter()
            .map(|p| String::from_utf8_lossy(p.payload()).into_owned())
            .collect()
    };
    let abstract_file = dir.path("abstract.pcapng");
    let at = format!("@{name}");
    let ud = Udstrace::start(&["-w", abstract_file.to_str().unwrap(), "--path", &at]);
    traffic();
    assert!(ud.stop().success);
    assert_eq!(
        payloads(&abstract_file),
        set(&["to-abstract", "from-abstract"])
    );

    let dgram_file = dir.path("dgram.pcapng");
    let ud = Udstrace::start(&[
        "-w",
        dgram_file.to_str().unwrap(),
        "--path",
        dgram.to_str().unwrap(),
    ]);
    traffic();
    assert!(ud.stop().success);
    assert_eq!(
        payloads(&dgram_file),
        set(&["dgram-to-path", "connected-dgram"])
    );
}

/// A server in its own mount namespace binds `inner/app.sock`, where `inner` is a bind mount
/// of `host` that only that namespace sees (as a container's `/run` is a host directory). The
/// host's path to the socket, `host/app.sock`, finds its traffic; other traffic is left out;
/// a path that is not a socket is a one-line error.
#[test]
fn path_across_mount_namespaces() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("mntns");
    let (host, inner) = (dir.path("host"), dir.path("inner"));
    std::fs::create_dir_all(&host).unwrap();
    std::fs::create_dir_all(&inner).unwrap();
    let inner_sock = inner.join("app.sock");
    let script = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         s.bind('{p}'); s.listen(1)\n\
         print('ready', flush=True)\n\
         sys.stdin.readline()\n\
         c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect('{p}')\n\
         c.sendall(b'hello from the namespace')\n\
         conn, _ = s.accept(); conn.recv(100); conn.sendall(b'reply in the namespace')\n\
         c.recv(100)\n\
         x, y = socket.socketpair(); x.sendall(b'unrelated'); y.recv(100)\n\
         print('done', flush=True)\n\
         sys.stdin.readline()\n",
        p = inner_sock.display()
    );
    let mut server = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && exec /usr/bin/python3 -c "$3""#)
        .args([
            "sh",
            host.to_str().unwrap(),
            inner.to_str().unwrap(),
            &script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let host_sock = host.join("app.sock");
    assert!(host_sock.exists(), "the host sees the socket file in host/");
    assert!(
        !inner_sock.exists(),
        "and not under inner/, mounted only in the namespace"
    );

    let file = dir.path("mntns.pcapng");
    let ud = Udstrace::start(&[
        "-w",
        file.to_str().unwrap(),
        "--path",
        host_sock.to_str().unwrap(),
    ]);
    let mut stdin = server.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    let done = ud.stop();
    let _ = stdin.write_all(b"end\n");
    let _ = server.wait();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let payloads: BTreeSet<Vec<u8>> = cap.packets.iter().map(|p| p.payload().to_vec()).collect();
    assert_eq!(
        payloads,
        [
            b"hello from the namespace".to_vec(),
            b"reply in the namespace".to_vec()
        ]
        .into()
    );
    let inner_str = inner_sock.to_str().unwrap();
    for p in &cap.packets {
        assert!(
            p.meta("path") == Some(inner_str) || p.meta("peer_path") == Some(inner_str),
            "{}",
            p.comment
        );
    }

    let not_socket = udstrace_tests::run(&["--path", dir.path("mntns.pcapng").to_str().unwrap()]);
    assert!(!not_socket.success);
    assert_eq!(
        not_socket.stderr,
        [format!("udstrace: {} is not a socket", file.display())]
    );
}
