//! `udstrace ls` against `ss -xp`: the same sockets, peers and holders.

use std::{
    collections::HashMap,
    os::unix::{
        fs::MetadataExt,
        io::AsRawFd,
        net::{UnixDatagram, UnixListener, UnixStream},
    },
    process::Command,
};

use udstrace_tests::{inode, own_pid, run, TempDir};

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
