//! Who talks to whom: both ends of messages between processes, descriptors and credentials
//! passed with the messages, datagrams sent by address.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    os::unix::fs::MetadataExt,
    process::{Child, Command, Stdio},
};

use super::*;

/// Sends `payload` with the control messages `control` (already laid out as `cmsghdr`s); an
/// empty payload goes without an iovec.
fn sendmsg_control(fd: impl AsFd, payload: &[u8], control: &[u8]) -> usize {
    let one = [payload];
    let parts: &[&[u8]] = if payload.is_empty() { &[] } else { &one };
    check(sys::sendmsg(fd, parts, control, 0))
}

/// A `cmsghdr` of level `SOL_SOCKET` and type `kind` with `data`, padded to 8 bytes.
fn cmsg(kind: i32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(16 + data.len()).to_ne_bytes());
    b.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(data);
    b.resize(b.len().div_ceil(8) * 8, 0);
    b
}

fn rights(fds: &[RawFd]) -> Vec<u8> {
    let data: Vec<u8> = fds.iter().flat_map(|f| f.to_ne_bytes()).collect();
    cmsg(libc::SCM_RIGHTS, &data)
}

/// Receives one message and closes the descriptors it carried; returns its bytes and how
/// many descriptors came with it.
pub(super) fn recv_closing_fds(fd: impl AsFd) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; 256];
    let (n, fds) = check(sys::recvmsg_rights(fd, &mut buf, 512, 0));
    buf.truncate(n);
    (buf, fds.len())
}

/// The comment escaping of a description (space as `\x20`).
fn escaped(s: &str) -> String {
    s.replace(' ', "\\x20")
}

/// Descriptors of every kind passed on a stream socket with credentials, one closed right
/// after the send (described from what the kernel recorded at send time), and a datagram
/// that carries only a descriptor: each is named exactly as `/proc/PID/fd` names it.
#[test]
fn passed_descriptors_and_credentials() {
    let dir = TempDir::new("scm");
    let (ud, file) = start_capture(&dir, &[]);
    let (a, b) = check(sys::socketpair(libc::SOCK_STREAM));
    let kept_path = dir.path("kept file.txt");
    let kept = std::fs::File::create(&kept_path).unwrap();
    let closed_path = dir.path("closed.txt");
    let closed = std::fs::File::create(&closed_path).unwrap();
    let (pipe_r, pipe_w) = check(sys::pipe());
    let (s1, _s2) = UnixStream::pair().unwrap();
    let memfd = check(sys::memfd_create(c"udstrace-test", libc::MFD_CLOEXEC));
    let fds = [
        kept.as_raw_fd(),
        pipe_r.as_raw_fd(),
        s1.as_raw_fd(),
        memfd.as_raw_fd(),
        closed.as_raw_fd(),
    ];
    let (pid, uid, gid) = (std::process::id(), sys::getuid(), sys::getgid());
    let mut control = rights(&fds);
    let cred: Vec<u8> = [pid, uid, gid]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    control.extend(cmsg(libc::SCM_CREDENTIALS, &cred));
    assert_eq!(sendmsg_control(&a, b"descriptors", &control), 11);
    let closed_fd = closed.as_raw_fd();
    drop(closed);
    assert_eq!(recv_closing_fds(&b), (b"descriptors".to_vec(), 5));

    // A datagram with no bytes, only a descriptor: still a message.
    let (da, db) = check(sys::socketpair(libc::SOCK_DGRAM));
    let only = rights(&[pipe_w.as_raw_fd()]);
    assert_eq!(sendmsg_control(&da, b"", &only), 0);
    assert_eq!(recv_closing_fds(&db), (Vec::new(), 1));

    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let ino = |fd: &dyn AsRawFd| inode(&fd.as_raw_fd());
    let p = cap
        .packets
        .iter()
        .find(|p| p.src() == ino(&a) && p.payload() == b"descriptors")
        .expect("the message with descriptors is captured");
    let expected = format!(
        "{}:{},{}:pipe:[{}],{}:socket:[{}],{}:/memfd:udstrace-test\\x20(deleted),{}:{}",
        fds[0],
        escaped(kept_path.to_str().unwrap()),
        fds[1],
        ino(&pipe_r),
        fds[2],
        ino(&s1),
        fds[3],
        closed_fd,
        closed_path.to_str().unwrap(),
    );
    assert_eq!(p.meta("fds"), Some(expected.as_str()), "{}", p.comment);
    assert_eq!(p.meta("cred_pid"), Some(pid.to_string().as_str()));
    assert_eq!(p.meta("cred_uid"), Some(uid.to_string().as_str()));
    assert_eq!(p.meta("cred_gid"), Some(gid.to_string().as_str()));
    // Only the message's first packet carries them.
    assert_eq!(
        cap.packets
            .iter()
            .filter(|p| p.src() == ino(&a) && p.meta("fds").is_some())
            .count(),
        1
    );

    let d = cap
        .packets
        .iter()
        .find(|p| p.src() == ino(&da))
        .expect("the empty datagram is captured");
    assert_eq!(d.payload_len(), 0);
    assert_eq!(d.meta("msg_len"), Some("0"));
    let pipe_w_ino = std::fs::metadata(format!("/proc/self/fd/{}", pipe_w.as_raw_fd()))
        .unwrap()
        .ino();
    assert_eq!(
        d.meta("fds"),
        Some(format!("{}:pipe:[{pipe_w_ino}]", pipe_w.as_raw_fd()).as_str()),
        "{}",
        d.comment
    );
}

/// A Python child, its stdout read line by line.
pub(super) struct Py {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Py {
    /// Runs `script`; the descriptors in `inherit` stay open in the child (only there:
    /// the other tests of this process fork at the same time).
    pub(super) fn spawn(script: &str, args: &[&str], inherit: &[RawFd]) -> Self {
        // Debian's interpreter itself: a wrapper on PATH (pyenv's shim is a shell script)
        // would be another process holding the descriptors.
        let mut command = Command::new("/usr/bin/python3");
        command
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        sys::keep_open_across_exec(&mut command, inherit);
        let mut child = command.spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Self { child, out }
    }

    pub(super) fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    pub(super) fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Packets whose payload is `payload`.
fn with_payload<'a>(
    cap: &'a udstrace_tests::CaptureFile,
    payload: &[u8],
) -> Vec<&'a udstrace_tests::Pkt> {
    cap.packets
        .iter()
        .filter(|p| p.payload() == payload)
        .collect()
}

/// One end of a socketpair handed to another process over a Unix socket (`SCM_RIGHTS`):
/// what that process writes on it is its own, and what the other end writes goes to it.
#[test]
fn socket_passed_to_another_process() {
    let dir = TempDir::new("pass");
    let (ud, file) = start_capture(&dir, &["--follow"]);
    let (c1, c2) = UnixStream::pair().unwrap();
    let (mut x, y) = UnixStream::pair().unwrap();
    let (ino_x, ino_y) = (inode(&x), inode(&y));
    let mut child = Py::spawn(
        "import socket, sys\n\
         c = socket.socket(fileno=int(sys.argv[1]))\n\
         msg, anc, _, _ = c.recvmsg(16, socket.CMSG_LEN(4))\n\
         y = socket.socket(fileno=int.from_bytes(anc[0][2], 'little'))\n\
         y.sendall(b'from the child on the passed socket')\n\
         print(y.recv(100).decode(), flush=True)\n\
         sys.stdin.read()\n",
        &[&c2.as_raw_fd().to_string()],
        &[c2.as_raw_fd()],
    );
    drop(c2);
    let control = rights(&[y.as_raw_fd()]);
    assert_eq!(sendmsg_control(&c1, b"take it", &control), 7);
    let y_fd = y.as_raw_fd();
    drop(y);
    let mut got = vec![0u8; 34];
    x.read_exact(&mut got).unwrap();
    assert_eq!(got, b"from the child on the passed socket"[..34]);
    let mut rest = [0u8; 1];
    x.read_exact(&mut rest).unwrap();
    x.write_all(b"to the child on the passed socket").unwrap();
    assert_eq!(child.line(), "to the child on the passed socket");
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let own = own_pid();

    let take = with_payload(&cap, b"take it");
    assert_eq!(take.len(), 1);
    assert_eq!(take[0].meta("pid"), Some(own.as_str()));
    assert_eq!(
        take[0].meta("fds"),
        Some(format!("{y_fd}:socket:[{ino_y}]").as_str())
    );
    assert_eq!(
        take[0].meta("peer_pid"),
        Some(child.pid().as_str()),
        "{}",
        take[0].comment
    );

    let from = with_payload(&cap, b"from the child on the passed socket");
    assert_eq!(from.len(), 1, "one packet from the child");
    let from = from[0];
    assert_eq!(
        from.meta("pid"),
        Some(child.pid().as_str()),
        "{}",
        from.comment
    );
    assert_eq!(from.meta("comm"), Some("python3"));
    assert_eq!((from.src(), from.dst()), (ino_y, ino_x));
    assert_eq!(
        from.meta("peer_pid"),
        Some(own.as_str()),
        "{}",
        from.comment
    );

    let to = with_payload(&cap, b"to the child on the passed socket");
    assert_eq!(to.len(), 1);
    assert_eq!(to[0].meta("pid"), Some(own.as_str()));
    assert_eq!((to[0].src(), to[0].dst()), (ino_x, ino_y));
    assert_eq!(
        to[0].meta("peer_pid"),
        Some(child.pid().as_str()),
        "{}",
        to[0].comment
    );
    assert_eq!(to[0].meta("peer_comm"), Some("python3"));
}

/// A named stream server with two clients, each its own process: every client's message
/// names the client as sender and the server as receiver, every reply the reverse.
#[test]
fn named_server_with_several_clients() {
    let dir = TempDir::new("server");
    let (ud, file) = start_capture(&dir, &["--follow"]);
    let path = dir.path("server.sock");
    let path_s = path.to_str().unwrap();
    let mut server = Py::spawn(
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         s.bind(sys.argv[1]); s.listen(4)\n\
         print('ready', flush=True)\n\
         conns = []\n\
         for i in range(2):\n\
         \x20   c, _ = s.accept(); conns.append(c)\n\
         \x20   n = c.recv(100).decode().split()[-1]\n\
         \x20   c.sendall(('welcome ' + n).encode())\n\
         print('served', flush=True)\n\
         sys.stdin.read()\n",
        &[path_s],
        &[],
    );
    assert_eq!(server.line(), "ready");
    let client = |n: &str| {
        let mut c = Py::spawn(
            "import socket, sys\n\
             c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
             c.connect(sys.argv[1])\n\
             c.sendall(('hello from client ' + sys.argv[2]).encode())\n\
             print(c.recv(100).decode(), flush=True)\n\
             sys.stdin.read()\n",
            &[path_s, n],
            &[],
        );
        assert_eq!(c.line(), format!("welcome {n}"));
        c
    };
    let one = client("1");
    let two = client("2");
    assert_eq!(server.line(), "served");
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    for (n, c) in [("1", &one), ("2", &two)] {
        let hello = with_payload(&cap, format!("hello from client {n}").as_bytes());
        assert_eq!(hello.len(), 1);
        let h = hello[0];
        assert_eq!(h.meta("pid"), Some(c.pid().as_str()), "{}", h.comment);
        assert_eq!(h.meta("path"), Some(""));
        assert_eq!(h.meta("peer_path"), Some(path_s));
        assert_eq!(
            h.meta("peer_pid"),
            Some(server.pid().as_str()),
            "{}",
            h.comment
        );
        let welcome = with_payload(&cap, format!("welcome {n}").as_bytes());
        assert_eq!(welcome.len(), 1);
        let w = welcome[0];
        assert_eq!(w.meta("pid"), Some(server.pid().as_str()));
        assert_eq!(w.meta("path"), Some(path_s));
        assert_eq!(w.meta("peer_path"), Some(""));
        assert_eq!(w.meta("peer_pid"), Some(c.pid().as_str()), "{}", w.comment);
        // The same conversation (the server's end may have had no inode yet when the client
        // wrote: not accepted).
        assert_eq!((w.src_addr(), w.dst_addr()), (h.dst_addr(), h.src_addr()));
    }
}

/// A bound datagram socket held by two reader processes, written to by address (`sendto`)
/// from a third: the destination is the bound socket, both readers are its holders, and with
/// `--recv` each reader's receive shows which datagram it read.
#[test]
fn datagram_socket_shared_by_two_readers() {
    let dir = TempDir::new("shared");
    let (ud, file) = start_capture(&dir, &["--follow", "--recv"]);
    let path = dir.path("shared.sock");
    let path_s = path.to_str().unwrap();
    let bound = UnixDatagram::bind(&path).unwrap();
    let bound_ino = inode(&bound);
    // Each reader reads once told to, when the datagrams are already queued: a reader blocked
    // in recv holds one of the few kretprobe instances an old kernel gives a function, and
    // this test is about who read what, not about that limit.
    let reader = "import socket, sys\n\
                  s = socket.socket(fileno=int(sys.argv[1]))\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n\
                  print(s.recv(100).decode(), flush=True)\n\
                  sys.stdin.read()\n";
    let fd = bound.as_raw_fd().to_string();
    let mut r1 = Py::spawn(reader, &[&fd], &[bound.as_raw_fd()]);
    let mut r2 = Py::spawn(reader, &[&fd], &[bound.as_raw_fd()]);
    assert_eq!((r1.line(), r2.line()), ("ready".into(), "ready".into()));
    drop(bound);
    let mut sender = Py::spawn(
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.sendto(b'datagram one', sys.argv[1])\n\
         s.sendto(b'datagram two', sys.argv[1])\n\
         print('sent', flush=True)\n\
         sys.stdin.read()\n",
        &[path_s],
        &[],
    );
    assert_eq!(sender.line(), "sent");
    r1.say("go");
    let got1 = r1.line();
    r2.say("go");
    let got2 = r2.line();
    let got: BTreeSet<String> = [got1.clone(), got2.clone()].into();
    assert_eq!(
        got,
        ["datagram one".to_string(), "datagram two".to_string()].into()
    );
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let readers: BTreeSet<String> = [r1.pid(), r2.pid()].into();
    // Who read what: each reader's receive, inbound, on the shared socket.
    for (reader, got) in [(&r1, &got1), (&r2, &got2)] {
        let reads: Vec<_> = with_payload(&cap, got.as_bytes())
            .into_iter()
            .filter(|p| p.meta("dir") == Some("recv"))
            .collect();
        assert_eq!(reads.len(), 1, "one receive of {got}");
        let r = reads[0];
        assert_eq!(r.meta("pid"), Some(reader.pid().as_str()), "{}", r.comment);
        assert_eq!(r.src(), bound_ino);
        assert_eq!(r.meta("path"), Some(path_s));
        assert_eq!(r.meta("syscall"), Some("recvfrom"), "{}", r.comment);
        assert_eq!(r.flags.map(|f| f & 3), Some(1), "inbound");
    }
    for payload in [&b"datagram one"[..], b"datagram two"] {
        let p: Vec<_> = with_payload(&cap, payload)
            .into_iter()
            .filter(|p| p.meta("dir").is_none())
            .collect();
        assert_eq!(p.len(), 1);
        let p = p[0];
        assert_eq!(p.meta("pid"), Some(sender.pid().as_str()));
        assert_eq!(p.meta("type"), Some("dgram"));
        assert_eq!(p.meta("peer_path"), Some(path_s), "{}", p.comment);
        assert_eq!(
            p.meta("peer_ino"),
            Some(bound_ino.to_string().as_str()),
            "{}",
            p.comment
        );
        let holders: BTreeSet<String> = p
            .meta("peer_pid")
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(holders, readers, "{}", p.comment);
    }
}

/// The receiving process is named: a socketpair whose other end was handed to a child
/// process (created after the capture started) shows the child as `peer_pid`/`peer_comm`.
#[test]
fn peer_process_is_the_holder_of_the_other_end() {
    let dir = TempDir::new("peers");
    let (ud, file) = start_capture(&dir, &[]);
    let (mut a, b) = UnixStream::pair().unwrap();
    // The child inherits b (only the child, not every process this one spawns), the parent
    // closes its copy.
    let mut child = endpoints::Py::spawn(
        "import time; print('ready', flush=True); time.sleep(30)",
        &[],
        &[b.as_raw_fd()],
    );
    assert_eq!(child.line(), "ready");
    drop(b);
    a.write_all(b"to the child").unwrap();
    let done = ud.stop();
    let child_pid = child.pid();
    drop(child);
    assert!(done.success);
    let cap = read_capture(&file);
    let p = cap
        .packets
        .iter()
        .find(|p| p.payload() == b"to the child")
        .expect("captured");
    assert_eq!(
        p.meta("peer_pid"),
        Some(child_pid.as_str()),
        "{}",
        p.comment
    );
    assert_eq!(p.meta("peer_comm"), Some("python3"), "{}", p.comment);
}
