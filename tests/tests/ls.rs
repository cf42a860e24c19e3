//! `udstrace ls` against `ss -xp`: the same sockets, peers and holders.

use std::{
    collections::HashMap,
    os::unix::{
        fs::MetadataExt,
        io::AsRawFd,
        net::{UnixDatagram, UnixListener, UnixStream},
    },
    path::Path,
    process::{Command, Stdio},
};

use udstrace_tests::{inode, link_number, own_pid, run, udstrace_bin, TempDir};

/// `ss -xapn`: local inode -> (peer inode, the `users:` text).
fn ss() -> HashMap<u64, (u64, String)> {
    let out = Command::new("ss")
        .args(["-xapn"])
        .output()
        .expect("ss (iproute2)");
    assert!(out.status.success());
    let mut m = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        if let (Ok(local), Ok(peer)) = (f[5].parse::<u64>(), f[7].parse::<u64>()) {
            m.insert(local, (peer, f[8..].join(" ")));
        }
    }
    m
}

/// The JSON object of socket `ino` in `udstrace ls --json` output.
fn entry(json: &str, ino: u64) -> &str {
    json.lines()
        .find(|l| l.contains(&format!("\"ino\":{ino},")))
        .unwrap_or_else(|| panic!("socket {ino} not listed:\n{json}"))
}

#[test]
fn ls_matches_ss() {
    let dir = TempDir::new("ls");
    let (a, b) = UnixStream::pair().unwrap();
    let path = dir.path("server.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let client = UnixStream::connect(&path).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let dgram = UnixDatagram::bind(dir.path("dgram.sock")).unwrap();

    let out = run(&["ls", "--json", "-p", &own_pid()]);
    assert!(out.success, "{:?}", out.stderr);
    let json = out.stdout;
    let me = std::process::id();
    let ss = ss();
    for (sock, fd) in [
        (inode(&a), a.as_raw_fd()),
        (inode(&b), b.as_raw_fd()),
        (inode(&client), client.as_raw_fd()),
        (inode(&accepted), accepted.as_raw_fd()),
        (inode(&listener), listener.as_raw_fd()),
        (inode(&dgram), dgram.as_raw_fd()),
    ] {
        let e = entry(&json, sock);
        let (peer, users) = ss
            .get(&sock)
            .unwrap_or_else(|| panic!("ss does not list {sock}"));
        assert!(
            e.contains(&format!("\"peer_ino\":{peer},")),
            "{e} vs ss peer {peer}"
        );
        assert!(e.contains(&format!("{{\"pid\":{me},")), "{e}");
        assert!(
            e.contains(&format!("\"fd\":{fd},\"container\":\"\"}}")),
            "{e}"
        );
        assert!(users.contains(&format!("pid={me},fd={fd}")), "ss: {users}");
    }
    let p = path.to_str().unwrap();
    assert!(entry(&json, inode(&listener)).contains("\"state\":\"LISTEN\","));
    assert!(entry(&json, inode(&listener)).contains(&format!("\"path\":\"{p}\"")));
    assert!(entry(&json, inode(&client)).contains(&format!("\"peer_path\":\"{p}\"")));
    assert!(entry(&json, inode(&dgram)).contains("\"type\":\"dgram\""));
    // Filters: only the named server's sockets.
    let out = run(&["ls", "--json", "--path", p]);
    assert!(out.success);
    assert!(out.stdout.contains(&format!("\"ino\":{},", inode(&client))));
    assert!(!out.stdout.contains(&format!("\"ino\":{},", inode(&a))));
    // A path is matched by the file it names: another path to it finds the same sockets,
    // which were bound with the first.
    let link = dir.path("link.sock");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let out = run(&["ls", "--json", "--path", link.to_str().unwrap()]);
    assert!(out.success, "{:?}", out.stderr);
    for sock in [inode(&listener), inode(&accepted), inode(&client)] {
        assert!(
            out.stdout.contains(&format!("\"ino\":{sock},")),
            "{}",
            out.stdout
        );
    }
    assert_eq!(out.stdout.lines().count(), 5, "3 sockets:\n{}", out.stdout);
    // A path that is no file here is a name (as a container would have bound it): none.
    let out = run(&[
        "ls",
        "--json",
        "--path",
        dir.path("none.sock").to_str().unwrap(),
    ]);
    assert!(out.success, "{:?}", out.stderr);
    assert_eq!(out.stdout, "[\n]\n");
    // Bad values: one line and the usage exit code.
    let plain = dir.path("plain");
    std::fs::write(&plain, b"").unwrap();
    for (arg, said) in [
        (
            "",
            "udstrace: --path is empty: give a socket's path, @name or a glob".to_string(),
        ),
        (
            plain.to_str().unwrap(),
            format!("udstrace: {} is not a socket", plain.display()),
        ),
    ] {
        let out = run(&["ls", "--path", arg]);
        assert_eq!(out.code, Some(2), "{arg:?}");
        assert_eq!(out.stderr, [said]);
        assert_eq!(out.stdout, "");
    }
    // The table names the processes.
    let out = run(&["ls", "-p", &own_pid(), "--type", "stream"]);
    assert!(out.success);
    assert!(out.stdout.lines().next().unwrap().starts_with("TYPE"));
    assert!(out.stdout.contains(&format!("[{me}]:{}", a.as_raw_fd())));
    assert!(!out.stdout.contains("dgram"));
    let _ = std::fs::metadata(&path).unwrap().ino();
}

/// A listener in a network namespace of its own (`unshare --net`), on an abstract name (which
/// only its namespace sees): listed with that namespace and its holder, though `ss` (this
/// namespace's sockets) does not show it; without CAP_SYS_ADMIN it is left out and one line
/// says so.
#[test]
fn ls_sees_other_network_namespaces() {
    let name = format!("udstrace-netns-{}", std::process::id());
    let mut server = Command::new("unshare")
        .args(["--net", "python3", "-c"])
        .arg(
            "import socket, sys, time\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.bind('\\0' + sys.argv[1])\n\
             s.listen()\n\
             print('listening', flush=True)\n\
             time.sleep(60)\n",
        )
        .arg(&name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux), python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "listening\n");
    let proc = Path::new("/proc").join(server.id().to_string());
    let theirs = link_number(&proc.join("ns/net"), "net").unwrap();
    assert_ne!(
        theirs,
        link_number(Path::new("/proc/self/ns/net"), "net").unwrap()
    );
    let socket: Vec<(u64, String)> = std::fs::read_dir(proc.join("fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let fd = e.file_name().into_string().unwrap();
            link_number(&e.path(), "socket").map(|ino| (ino, fd))
        })
        .collect();
    let [(ino, fd)] = &socket[..] else {
        panic!("one socket: {socket:?}")
    };
    assert!(!ss().contains_key(ino), "ss sees only its own namespace");

    let abstract_name = format!("@{name}");
    let out = run(&["ls", "--json", "--path", &abstract_name]);
    assert!(out.success, "{:?}", out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "[\n  {{\"type\":\"stream\",\"state\":\"LISTEN\",\"ino\":{ino},\"peer_ino\":0,\
             \"netns\":{theirs},\"path\":\"{abstract_name}\",\"peer_path\":\"\",\
             \"processes\":[{{\"pid\":{},\"comm\":\"python3\",\"fd\":{fd},\
             \"container\":\"\"}}],\"peer_processes\":[]}}\n]\n",
            server.id()
        )
    );

    // Without CAP_SYS_ADMIN (gone from the bounding set, so from root's capabilities).
    let out = Command::new("setpriv")
        .args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin"])
        .arg(udstrace_bin())
        .args(["ls", "--json", "--path", &abstract_name])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux)");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[\n]\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("udstrace: the sockets of ")
            && stderr.contains(
                " not listed (entering one needs CAP_SYS_ADMIN): Operation not permitted"
            ),
        "{stderr}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
