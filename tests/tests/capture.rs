//! (Test code: libc return values and lengths are cast freely; a wrong cast fails the test.)
#![allow(
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation,
    clippy::similar_names,
    clippy::items_after_statements,
    clippy::borrow_as_ptr,
    clippy::too_many_lines
)]

//! Capture fidelity: real programs loaded, real sockets driven in this process with known
//! bytes, and every byte checked in the capture file, with our parser and with tshark.

use std::os::linux::net::SocketAddrExt;
use std::{
    io::{Read, Write},
    os::unix::{
        io::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        net::{UnixDatagram, UnixListener, UnixStream},
    },
    thread,
    time::Duration,
};

use udstrace_tests::{
    datagrams, inode, io_uring, own_pid, pattern, read_capture, run, tcp_stream, tshark_follow,
    tshark_payloads, TempDir, Udstrace,
};

fn check(rc: isize) -> usize {
    assert!(
        rc >= 0,
        "syscall failed: {}",
        std::io::Error::last_os_error()
    );
    rc as usize
}

fn iovecs(parts: &[&[u8]]) -> Vec<libc::iovec> {
    parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut _,
            iov_len: p.len(),
        })
        .collect()
}

fn writev(fd: RawFd, parts: &[&[u8]]) -> usize {
    let iov = iovecs(parts);
    check(unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as i32) })
}

fn sendmsg(fd: RawFd, parts: &[&[u8]]) -> usize {
    let mut iov = iovecs(parts);
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    check(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) })
}

fn sendmmsg(fd: RawFd, messages: &[&[&[u8]]]) -> usize {
    let mut iovs: Vec<Vec<libc::iovec>> = messages.iter().map(|m| iovecs(m)).collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov.as_mut_ptr();
            h.msg_hdr.msg_iovlen = iov.len();
            h
        })
        .collect();
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
    assert_eq!(
        n as usize,
        messages.len(),
        "sendmmsg: {}",
        std::io::Error::last_os_error()
    );
    n as usize
}

fn socketpair(kind: i32) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(
        unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) },
        0
    );
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn set_nonblocking(fd: RawFd) {
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) },
        0
    );
}

/// Reads everything from `s` until EOF, in a thread.
fn drain(mut s: UnixStream) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v
    })
}

fn start_capture(dir: &TempDir, extra: &[&str]) -> (Udstrace, std::path::PathBuf) {
    let file = dir.path("capture.pcapng");
    let pid = own_pid();
    let mut args = vec!["-p", &pid, "-w", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Udstrace::start(&args), file)
}

/// Every way of sending on a stream socket, both directions of a socketpair: the capture
/// reassembles to exactly what each peer read, with our parser, with tshark's fields and with
/// tshark's Follow TCP Stream.
#[test]
fn stream_socketpair_every_send_call() {
    let dir = TempDir::new("stream");
    let (ud, file) = start_capture(&dir, &[]);

    let (a, b) = UnixStream::pair().unwrap();
    let (ino_a, ino_b) = (inode(&a), inode(&b));
    let reader_b = drain(b.try_clone().unwrap());
    let mut a_sent = Vec::new();
    let p: Vec<Vec<u8>> = (0..12).map(|i| pattern(i, 100 + i as usize * 37)).collect();
    // write(2) (std's write on a socket is a send)
    let n = check(unsafe { libc::write(a.as_raw_fd(), p[0].as_ptr().cast(), p[0].len()) });
    a_sent.extend_from_slice(&p[0][..n]);
    // send / sendto
    let n = check(unsafe { libc::send(a.as_raw_fd(), p[1].as_ptr().cast(), p[1].len(), 0) });
    a_sent.extend_from_slice(&p[1][..n]);
    let n = check(unsafe {
        libc::sendto(
            a.as_raw_fd(),
            p[2].as_ptr().cast(),
            p[2].len(),
            0,
            std::ptr::null(),
            0,
        )
    });
    a_sent.extend_from_slice(&p[2][..n]);
    // writev with an empty iovec in the middle
    let n = writev(a.as_raw_fd(), &[&p[3], b"", &p[4], &p[5]]);
    assert_eq!(n, p[3].len() + p[4].len() + p[5].len());
    a_sent.extend(p[3].iter().chain(&p[4]).chain(&p[5]));
    // sendmsg with three iovecs
    let n = sendmsg(a.as_raw_fd(), &[&p[6], &p[7], &p[8]]);
    assert_eq!(n, p[6].len() + p[7].len() + p[8].len());
    a_sent.extend(p[6].iter().chain(&p[7]).chain(&p[8]));
    // sendmmsg on a stream socket: two messages
    sendmmsg(a.as_raw_fd(), &[&[&p[9]], &[&p[10], &p[11]]]);
    a_sent.extend(p[9].iter().chain(&p[10]).chain(&p[11]));
    // pwritev2 with offset -1 (the socket's "current position")
    let iov = iovecs(&[b"pwritev2:", &p[0]]);
    let n = check(unsafe { libc::pwritev2(a.as_raw_fd(), iov.as_ptr(), 2, -1, 0) });
    a_sent.extend(b"pwritev2:".iter().chain(&p[0]).take(n));
    // empty write: nothing on the wire
    check(unsafe { libc::write(a.as_raw_fd(), b"".as_ptr().cast(), 0) });
    // The other direction.
    let reader_a = drain(a.try_clone().unwrap());
    let mut b2 = b.try_clone().unwrap();
    let b_sent = pattern(99, 5000);
    b2.write_all(&b_sent).unwrap();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    b.shutdown(std::net::Shutdown::Write).unwrap();
    let b_received = reader_b.join().unwrap();
    let a_received = reader_a.join().unwrap();
    assert_eq!(b_received, a_sent);
    assert_eq!(a_received, b_sent);

    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    assert_eq!(cap.linktype, 101);
    assert_eq!(cap.if_tsresol, 9);
    let (stream_a, holes) = tcp_stream(&cap.packets, ino_a);
    assert!(holes.is_empty(), "holes {holes:?}");
    assert_eq!(stream_a, a_sent);
    let (stream_b, holes) = tcp_stream(&cap.packets, ino_b);
    assert!(holes.is_empty());
    assert_eq!(stream_b, b_sent);

    // One packet per send call, each with its system call named.
    let sys: Vec<&str> = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_a)
        .map(|p| p.meta("syscall").unwrap())
        .collect();
    assert_eq!(
        sys,
        ["write", "sendto", "sendto", "writev", "sendmsg", "sendmmsg", "sendmmsg", "pwritev2"]
    );
    for pkt in cap.packets.iter().filter(|p| p.src() == ino_a) {
        assert_eq!(pkt.dst(), ino_b);
        assert_eq!(pkt.meta("type"), Some("stream"));
        assert_eq!(pkt.meta("ino"), Some(ino_a.to_string().as_str()));
        assert_eq!(pkt.meta("peer_ino"), Some(ino_b.to_string().as_str()));
        assert_eq!(pkt.meta("pid"), Some(own_pid().as_str()));
        assert_eq!(pkt.meta("path"), Some(""));
        assert_eq!(pkt.flags, Some(2), "outbound");
        assert_eq!(pkt.pid_tid.unwrap().0, std::process::id());
        assert_eq!(pkt.meta("uid"), Some("0"));
    }

    // tshark reads the same bytes, at the same sequence numbers.
    let ts: Vec<u8> = tshark_payloads(&file, &cap.packets, ino_a)
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    assert_eq!(ts, a_sent);
    let (follow_a, follow_b) = tshark_follow(&file, &cap.packets, ino_a, ino_b);
    assert_eq!(follow_a, a_sent, "Follow TCP Stream, a -> b");
    assert_eq!(follow_b, b_sent, "Follow TCP Stream, b -> a");
}

/// Large sends are split into packets, not truncated: a 3 MiB write and a writev of 1,024
/// iovecs, while the peer reads concurrently.
#[test]
fn large_sends_are_complete() {
    let dir = TempDir::new("large");
    let (ud, file) = start_capture(&dir, &[]);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    let reader = drain(b);
    let big = pattern(1, 3 << 20);
    a.write_all(&big).unwrap();
    let pieces: Vec<Vec<u8>> = (0..1024)
        .map(|i| pattern(1000 + i, 1000 + (i as usize % 7)))
        .collect();
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let mut sent = big.clone();
    // The kernel may accept a large writev in part: send the rest as it would be retried.
    let total: usize = refs.iter().map(|r| r.len()).sum();
    let n = writev(a.as_raw_fd(), &refs);
    let flat: Vec<u8> = pieces.concat();
    sent.extend_from_slice(&flat[..n]);
    if n < total {
        a.write_all(&flat[n..]).unwrap();
        sent.extend_from_slice(&flat[n..]);
    }
    drop(a);
    assert_eq!(reader.join().unwrap(), sent);
    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);
    let (stream, holes) = tcp_stream(&cap.packets, ino_a);
    assert!(holes.is_empty(), "holes {holes:?}");
    assert_eq!(stream.len(), sent.len());
    assert!(stream == sent, "captured bytes differ from the bytes sent");
    for p in cap.packets.iter().filter(|p| p.src() == ino_a) {
        assert!(p.payload_len() <= 65_024);
    }
    let writev_packets = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_a && p.meta("syscall") == Some("writev"))
        .count();
    assert!(
        writev_packets >= 16,
        "a 1 MiB writev is at least 16 packets, got {writev_packets}"
    );
    let ts: Vec<u8> = tshark_payloads(&file, &cap.packets, ino_a)
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    assert!(ts == sent, "tshark's bytes differ");
}

/// Non-blocking sends that the kernel takes only in part, sends that fail with EAGAIN, and
/// sends that fail with EPIPE: the capture holds exactly the accepted bytes.
#[test]
fn partial_writes_record_accepted_bytes() {
    let dir = TempDir::new("partial");
    let (ud, file) = start_capture(&dir, &[]);
    let (a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    set_nonblocking(a.as_raw_fd());
    let chunk = pattern(7, 300_000);
    let mut accepted = Vec::new();
    let mut received = Vec::new();
    let mut partial = 0;
    let mut eagain = 0;
    for round in 0..40 {
        let rc = unsafe {
            libc::send(
                a.as_raw_fd(),
                chunk.as_ptr().cast(),
                chunk.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if rc < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            );
            eagain += 1;
            if round % 3 == 0 {
                // Let the reader make some room.
                let mut buf = vec![0u8; 100_000];
                let got = (&b).read(&mut buf).unwrap();
                received.extend_from_slice(&buf[..got]);
            }
            continue;
        }
        let n = rc as usize;
        if n < chunk.len() {
            partial += 1;
        }
        accepted.extend_from_slice(&chunk[..n]);
    }
    assert!(
        partial > 0 && eagain > 0,
        "the workload made partial writes ({partial}) and EAGAIN ({eagain})"
    );
    // Read the rest, then make the peer go away and fail with EPIPE.
    set_nonblocking(b.as_raw_fd());
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = (&b).read(&mut buf) {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    assert!(
        received == accepted,
        "the peer read what the sends accepted"
    );
    drop(b);
    let rc = unsafe { libc::send(a.as_raw_fd(), chunk.as_ptr().cast(), 10, libc::MSG_NOSIGNAL) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPIPE)
    );

    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);
    let (stream, holes) = tcp_stream(&cap.packets, ino_a);
    assert!(holes.is_empty(), "holes {holes:?}");
    assert_eq!(
        stream.len(),
        accepted.len(),
        "captured the accepted bytes, not the attempted ones"
    );
    assert!(stream == accepted);
}

/// Datagram and seqpacket sockets keep message boundaries, including empty datagrams;
/// sendmmsg messages each become a packet; named and abstract sockets show their names.
#[test]
fn datagrams_seqpackets_and_names() {
    let dir = TempDir::new("dgram");
    let (ud, file) = start_capture(&dir, &[]);

    // dgram socketpair with sendmmsg (three messages, one empty, one of two iovecs) and send.
    let (d1, d2) = socketpair(libc::SOCK_DGRAM);
    let (ino_d1, ino_d2) = (inode(&d1), inode(&d2));
    let m: Vec<Vec<u8>> = (0..4)
        .map(|i| pattern(50 + i, 10 + i as usize * 300))
        .collect();
    sendmmsg(d1.as_raw_fd(), &[&[&m[0]], &[], &[&m[1], &m[2]]]);
    check(unsafe { libc::send(d1.as_raw_fd(), m[3].as_ptr().cast(), m[3].len(), 0) });
    let expected_d1 = vec![
        m[0].clone(),
        Vec::new(),
        [m[1].clone(), m[2].clone()].concat(),
        m[3].clone(),
    ];

    // seqpacket socketpair: a 100 KiB record, split over several packets of one message.
    let (s1, s2) = socketpair(libc::SOCK_SEQPACKET);
    let ino_s1 = inode(&s1);
    let rec = pattern(60, 50_000);
    let n = sendmsg(s1.as_raw_fd(), &[&rec[..20_000], &rec[20_000..]]);
    assert_eq!(n, rec.len());

    // Named dgram server, unbound client sending with sendto.
    let path = dir.path("server.sock");
    let server = UnixDatagram::bind(&path).unwrap();
    let client = UnixDatagram::unbound().unwrap();
    let ino_client = inode(&client);
    client.send_to(b"to the named socket", &path).unwrap();
    // A connected client: the peer is known, with its path.
    let client2 = UnixDatagram::unbound().unwrap();
    client2.connect(&path).unwrap();
    let ino_client2 = inode(&client2);
    client2.send(b"connected").unwrap();

    // Abstract stream server.
    let abs_name = format!("udstrace-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(abs_name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&addr).unwrap();
    let mut conn = UnixStream::connect_addr(&addr).unwrap();
    let ino_conn = inode(&conn);
    let (mut accepted, _) = listener.accept().unwrap();
    let ino_accepted = inode(&accepted);
    conn.write_all(b"hello abstract").unwrap();
    accepted.write_all(b"hello client").unwrap();

    // Read everything (the kernel keeps it otherwise; reading is not needed for capture).
    let mut buf = vec![0u8; 70_000];
    for _ in 0..4 {
        check(unsafe { libc::recv(d2.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) });
    }
    let got = check(unsafe { libc::recv(s2.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) });
    assert_eq!(&buf[..got], &rec[..]);
    server.recv(&mut buf).unwrap();

    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);

    assert_eq!(datagrams(&cap.packets, ino_d1), expected_d1);
    for p in cap.packets.iter().filter(|p| p.src() == ino_d1) {
        assert_eq!(p.dst(), ino_d2);
        assert_eq!(p.meta("type"), Some("dgram"));
    }
    let ts: Vec<Vec<u8>> = tshark_payloads(&file, &cap.packets, ino_d1)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ts, expected_d1, "tshark's datagrams");

    let seq: Vec<_> = cap.packets.iter().filter(|p| p.src() == ino_s1).collect();
    assert_eq!(seq.len(), 1, "a 50,000-byte record fits one packet");
    assert_eq!(seq[0].payload(), &rec[..]);
    assert_eq!(seq[0].meta("type"), Some("seqpacket"));

    let to_named: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_client)
        .collect();
    assert_eq!(to_named.len(), 1);
    assert_eq!(to_named[0].payload(), b"to the named socket");
    let p2: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_client2)
        .collect();
    assert_eq!(p2[0].payload(), b"connected");
    assert_eq!(p2[0].meta("peer_path"), Some(path.to_str().unwrap()));
    assert_eq!(p2[0].meta("path"), Some(""));
    assert_eq!(p2[0].dst(), inode(&server));

    let at = format!("@{abs_name}");
    let c: Vec<_> = cap.packets.iter().filter(|p| p.src() == ino_conn).collect();
    assert_eq!(c[0].payload(), b"hello abstract");
    assert_eq!(c[0].dst(), ino_accepted);
    assert_eq!(c[0].meta("peer_path"), Some(at.as_str()));
    let s: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_accepted)
        .collect();
    assert_eq!(s[0].payload(), b"hello client");
    assert_eq!(
        s[0].meta("path"),
        Some(at.as_str()),
        "an accepted socket shares its listener's name"
    );
}

/// A `sendmmsg` cut short (the socket's send buffer full, `MSG_DONTWAIT`), then the same
/// vector sent again with new contents: each call's messages are captured from the entries
/// it sent, the second call starting again at entry 0.
#[test]
fn sendmmsg_vector_sent_again_after_a_short_call() {
    let dir = TempDir::new("mmsg");
    let (ud, file) = start_capture(&dir, &[]);

    let (d1, d2) = socketpair(libc::SOCK_DGRAM);
    let (ino_d1, fd1) = (inode(&d1), d1.as_raw_fd());
    let sndbuf: libc::c_int = 8192;
    assert_eq!(
        unsafe {
            libc::setsockopt(
                fd1,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const sndbuf).cast(),
                4,
            )
        },
        0
    );
    const ENTRIES: usize = 16;
    let mut bufs: Vec<Vec<u8>> = (0..ENTRIES).map(|_| vec![0u8; 2000]).collect();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();

    let mut expected = Vec::new();
    let mut buf = vec![0u8; 4096];
    for call in 0..3u64 {
        // New contents in the same buffers, behind the same vector.
        for (i, b) in bufs.iter_mut().enumerate() {
            let bytes = pattern(call * 100 + i as u64, b.len());
            // SAFETY: the iovecs point at these buffers; nothing reads them concurrently.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), b.as_mut_ptr(), b.len()) };
        }
        let n =
            unsafe { libc::sendmmsg(fd1, hdrs.as_mut_ptr(), ENTRIES as u32, libc::MSG_DONTWAIT) };
        let n = usize::try_from(n).expect("sendmmsg sent some");
        assert!(
            (1..ENTRIES).contains(&n),
            "a {sndbuf}-byte send buffer takes only some of {ENTRIES} messages, not {n}"
        );
        expected.extend(bufs[..n].iter().cloned());
        for _ in 0..n {
            check(unsafe { libc::recv(d2.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) });
        }
    }

    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);
    let got = datagrams(&cap.packets, ino_d1);
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the datagrams are each call's entries from 0 on"
    );
    assert!(cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_d1)
        .all(|p| p.meta("syscall") == Some("sendmmsg")));
}

/// A client that sends before the server accepts (the usual HTTP client): the kernel has
/// no inode for the server's socket yet, but the request and the reply are one conversation,
/// which tshark follows.
#[test]
fn client_sends_before_accept() {
    let dir = TempDir::new("accept");
    let (ud, file) = start_capture(&dir, &[]);
    let path = dir.path("server.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut client = UnixStream::connect(&path).unwrap();
    let ino_client = inode(&client);
    client
        .write_all(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let ino_conn = inode(&conn);
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf).unwrap();
    assert_eq!(n, 31);
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .unwrap();
    client.write_all(b"second request").unwrap();
    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);
    let from_client: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_client)
        .collect();
    let from_server: Vec<_> = cap.packets.iter().filter(|p| p.src() == ino_conn).collect();
    assert_eq!(from_client.len(), 2);
    assert_eq!(from_server.len(), 1);
    assert_eq!(from_client[0].dst_addr(), from_server[0].src_addr());
    assert_eq!(from_server[0].dst_addr(), from_client[0].src_addr());
    assert_eq!(
        from_client[0].meta("peer_path"),
        Some(path.to_str().unwrap())
    );
    assert_eq!(
        from_client[1].dst(),
        ino_conn,
        "the kernel knows the peer's inode once accepted"
    );
    let (req, resp) = tshark_follow(&file, &cap.packets, ino_client, ino_conn);
    assert_eq!(req, b"GET /info HTTP/1.1\r\nHost: x\r\n\r\nsecond request");
    assert_eq!(resp, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

/// sendfile and splice move page data. The function-hook backends see the pages and capture
/// the bytes; the tracepoint cannot see them: there the packets carry the right length and
/// `payload=missing`, and the byte offsets of later sends stay right.
#[test]
fn sendfile_and_splice() {
    let dir = TempDir::new("sendfile");
    let data_path = dir.path("data");
    let content = pattern(3, 20_000);
    std::fs::write(&data_path, &content).unwrap();
    let (ud, file) = start_capture(&dir, &[]);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    let reader = drain(b);
    a.write_all(b"before").unwrap();
    let f = std::fs::File::open(&data_path).unwrap();
    let mut off: libc::off_t = 0;
    let mut moved = 0;
    while moved < content.len() {
        moved += check(unsafe {
            libc::sendfile(
                a.as_raw_fd(),
                f.as_raw_fd(),
                &mut off,
                content.len() - moved,
            )
        });
    }
    // splice from a pipe.
    let mut pipe = [0; 2];
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let spliced = b"spliced bytes";
    assert_eq!(
        unsafe { libc::write(pipe[1], spliced.as_ptr().cast(), spliced.len()) },
        spliced.len() as isize
    );
    let n = check(unsafe {
        libc::splice(
            pipe[0],
            std::ptr::null_mut(),
            a.as_raw_fd(),
            std::ptr::null_mut(),
            spliced.len(),
            0,
        )
    });
    assert_eq!(n, spliced.len());
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    a.write_all(b"after").unwrap();
    drop(a);
    let received = reader.join().unwrap();
    assert_eq!(
        received,
        [&b"before"[..], &content, spliced, b"after"].concat()
    );
    let backend = ud.backend().to_string();
    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);
    let (stream, holes) = tcp_stream(&cap.packets, ino_a);
    assert_eq!(
        stream.len(),
        received.len(),
        "lengths of every send, seen or not"
    );
    let all: Vec<&str> = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_a)
        .map(|p| p.comment.as_str())
        .collect();
    let syscalls: Vec<&str> = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_a)
        .filter_map(|p| p.meta("syscall"))
        .collect();
    assert!(syscalls.contains(&"sendfile"), "{all:#?}");
    assert!(syscalls.contains(&"splice"), "{all:#?}");
    if backend != "tracepoint" {
        assert!(holes.is_empty(), "{backend}: {holes:?}");
        assert!(stream == received, "{backend}: the page data is captured");
        assert!(
            cap.packets.iter().all(|p| p.meta("payload").is_none()),
            "{all:#?}"
        );
        return;
    }
    assert_eq!(&stream[..6], b"before");
    assert_eq!(&stream[stream.len() - 5..], b"after");
    let missing: u64 = holes.iter().map(|h| h.1).sum();
    assert_eq!(missing as usize, content.len() + spliced.len());
    let kinds: Vec<(&str, &str)> = cap
        .packets
        .iter()
        .filter(|p| p.src() == ino_a && p.meta("payload") == Some("missing"))
        .map(|p| (p.meta("syscall").unwrap(), p.meta("payload").unwrap()))
        .collect();
    assert!(kinds.iter().any(|k| k.0 == "sendfile"), "{all:#?}");
    assert!(kinds.iter().any(|k| k.0 == "splice"), "{kinds:?}");
}

/// io_uring sends run inside the kernel on the process's behalf, not in a send system call.
/// The function-hook backends see the message and capture its bytes; the tracepoint records
/// its length with `payload=missing`.
#[test]
fn io_uring_send() {
    let dir = TempDir::new("io_uring");
    let (ud, file) = start_capture(&dir, &[]);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    let reader = drain(b);
    a.write_all(b"before").unwrap();
    let msg = pattern(9, 5_000);
    let sent = io_uring::send(a.as_raw_fd(), &msg).expect("io_uring");
    assert_eq!(sent as usize, msg.len());
    a.write_all(b"after").unwrap();
    drop(a);
    let received = reader.join().unwrap();
    assert_eq!(received, [&b"before"[..], &msg, b"after"].concat());
    let backend = ud.backend().to_string();
    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);
    let (stream, holes) = tcp_stream(&cap.packets, ino_a);
    assert_eq!(stream.len(), received.len(), "the length of every send");
    if backend == "tracepoint" {
        assert_eq!(holes.iter().map(|h| h.1).sum::<u64>(), msg.len() as u64);
        assert!(cap
            .packets
            .iter()
            .any(|p| p.src() == ino_a && p.meta("payload") == Some("missing")));
    } else {
        assert!(holes.is_empty(), "{backend}: {holes:?}");
        assert!(
            stream == received,
            "{backend}: the io_uring payload is captured"
        );
    }
}

/// `-s` cuts payloads and keeps the original length.
#[test]
fn snaplen_cuts_and_keeps_length() {
    let dir = TempDir::new("snaplen");
    let (ud, file) = start_capture(&dir, &["-s", "100"]);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    let reader = drain(b);
    let msg = pattern(5, 70_000);
    a.write_all(&msg).unwrap();
    a.write_all(b"short").unwrap();
    drop(a);
    reader.join().unwrap();
    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);
    let pk: Vec<_> = cap.packets.iter().filter(|p| p.src() == ino_a).collect();
    // 70,000 bytes: two segments, the first with 100 bytes kept, the second header only.
    assert_eq!(pk.len(), 3);
    assert_eq!(pk[0].payload(), &msg[..100]);
    assert_eq!(pk[0].payload_len(), 65_024);
    assert_eq!(pk[0].meta("payload"), Some("snaplen"));
    assert_eq!(pk[1].payload().len(), 0);
    assert_eq!(pk[1].payload_len(), 70_000 - 65_024);
    assert_eq!(pk[2].payload(), b"short");
    let (stream, holes) = tcp_stream(&cap.packets, ino_a);
    assert_eq!(stream.len(), 70_005);
    assert_eq!(holes, vec![(100, 70_000 - 100)]);
}

/// SIGTERM in the middle of heavy traffic leaves a valid file, mode 0600, ending with the
/// statistics block, whose counts match the summary line.
#[test]
fn sigterm_mid_capture_leaves_a_valid_file() {
    let dir = TempDir::new("sigterm");
    let file = dir.path("capture.pcapng");
    std::fs::write(&file, b"old content").unwrap();
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "-p", &own_pid()]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let traffic = thread::spawn(move || {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let reader = thread::spawn(move || std::io::copy(&mut b, &mut std::io::sink()).unwrap());
        let chunk = pattern(9, 4096);
        let mut n = 0u64;
        let started = std::time::Instant::now();
        // Bounded in time too, so that a udstrace that ignored SIGTERM cannot fill the disk.
        while !stop2.load(std::sync::atomic::Ordering::Relaxed)
            && started.elapsed() < Duration::from_secs(20)
        {
            a.write_all(&chunk).unwrap();
            n += 1;
        }
        drop(a);
        reader.join().unwrap();
        n
    });
    thread::sleep(Duration::from_millis(1500));
    let done = ud.stop();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = traffic.join().unwrap();
    assert!(done.success, "{:?}", done.stderr);
    assert!(writes > 100);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let cap = read_capture(&file);
    assert!(
        cap.ends_with_stats,
        "the file ends with the interface statistics block"
    );
    let (packets, lost) = done.summary();
    assert_eq!(cap.packets.len() as u64, packets);
    assert_eq!(cap.stats, Some((packets + lost, lost)));
    assert!(packets > 50, "captured {packets}");

    // Writing to a device leaves the device's mode alone.
    let null_mode = || std::fs::metadata("/dev/null").unwrap().permissions().mode() & 0o777;
    let before = null_mode();
    let ud = Udstrace::start(&["-w", "/dev/null", "-p", &own_pid()]);
    assert!(ud.stop().success);
    assert_eq!(null_mode(), before, "/dev/null keeps its mode");
}

/// Without `-w`, one line per packet; `-X` adds a hex dump; `-c` stops after COUNT packets;
/// `-r` prints a capture file the same way.
#[test]
fn text_view_count_and_read_back() {
    let dir = TempDir::new("text");
    let ud = Udstrace::start(&["-p", &own_pid(), "-c", "3", "-X"]);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    let ino_b = inode(&b);
    for msg in [&b"first message"[..], b"second", b"third", b"fourth"] {
        a.write_all(msg).unwrap();
    }
    let done = ud.wait();
    assert!(done.success, "{:?}", done.stderr);
    let lines: Vec<&str> = done
        .stdout
        .lines()
        .filter(|l| !l.starts_with('\t'))
        .collect();
    assert_eq!(lines.len(), 3, "{}", done.stdout);
    let me = std::process::id();
    let who = format!("[{me}");
    assert!(lines[0].contains(&who), "{}", lines[0]);
    // The peer socket is held by this process too: it is named as the reader.
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let comm = comm.trim();
    assert!(
        lines[0].contains(&format!("stream {ino_a} > {ino_b} {comm}[{me}], length 13")),
        "{}",
        lines[0]
    );
    assert!(
        done.stdout.contains("6669 7273 7420 6d65 7373 6167 65"),
        "hex dump of 'first message'"
    );
    assert!(
        done.stderr
            .iter()
            .any(|l| l == "3 packets captured, 0 lost"),
        "{:?}",
        done.stderr
    );
    drop(b);

    let (ud, file) = start_capture(&dir, &[]);
    let (mut a, _b) = UnixStream::pair().unwrap();
    a.write_all(b"read me back").unwrap();
    let done = ud.stop();
    assert!(done.success);
    let read = run(&["-r", file.to_str().unwrap(), "-A"]);
    assert!(read.success, "{:?}", read.stderr);
    assert!(read.stdout.contains("length 12"), "{}", read.stdout);
    assert!(read.stdout.contains("read me back"), "{}", read.stdout);
}

/// Bad input: one line on stderr, a non-zero exit, nothing attached.
#[test]
fn errors_are_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["-p", "999999999"], "no such process: 999999999"),
        (&["-p", "12x"], "invalid process id `12x`"),
        (
            &["-w", "/nonexistent-dir/x.pcapng"],
            "cannot write /nonexistent-dir/x.pcapng",
        ),
        (&["-c", "abc"], "invalid value 'abc'"),
        (&["--backend", "bogus"], "unknown backend `bogus`"),
        (
            &["-r", "/nonexistent.pcapng"],
            "cannot read /nonexistent.pcapng",
        ),
    ];
    for (args, expected) in cases {
        let out = run(args);
        assert!(!out.success, "{args:?} succeeded");
        assert_eq!(out.stderr.len(), 1, "{args:?}: {:?}", out.stderr);
        assert!(out.stderr[0].starts_with("udstrace: "), "{:?}", out.stderr);
        assert!(
            out.stderr[0].contains(expected),
            "{args:?}: {:?}",
            out.stderr
        );
    }
    // A file that is not pcapng.
    let dir = TempDir::new("errors");
    let junk = dir.path("junk");
    std::fs::write(&junk, b"not a capture").unwrap();
    let out = run(&["-r", junk.to_str().unwrap()]);
    assert!(!out.success);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);

    // Without privileges (setpriv drops root and every capability).
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(udstrace_tests::udstrace_bin())
        .args(["-c", "1"])
        .output()
        .expect("setpriv (util-linux)");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
}

/// A kernel buffer too small for the traffic: losses are counted, reported in the summary,
/// the statistics block and the packets' drop counts, and show as gaps in the TCP stream;
/// no byte is spliced in the wrong place.
#[test]
fn losses_are_counted_and_show_as_gaps() {
    let dir = TempDir::new("loss");
    let (ud, file) = start_capture(&dir, &["-B", "64"]);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    let reader = drain(b);
    let mut sent = Vec::new();
    for i in 0..400 {
        let chunk = pattern(i, 60_000);
        a.write_all(&chunk).unwrap();
        sent.extend_from_slice(&chunk);
    }
    drop(a);
    assert_eq!(reader.join().unwrap().len(), sent.len());
    let done = ud.stop();
    assert!(done.success);
    let (packets, lost) = done.summary();
    assert!(lost > 0, "a 64 KiB buffer cannot hold 24 MB sent at once");
    let cap = read_capture(&file);
    assert_eq!(cap.packets.len() as u64, packets);
    assert_eq!(cap.stats, Some((packets + lost, lost)));
    let drops: u64 = cap.packets.iter().map(|p| p.drops).sum();
    assert!(
        drops > 0 && drops <= lost,
        "drop counts {drops}, lost {lost}"
    );
    let (stream, holes) = tcp_stream(&cap.packets, ino_a);
    assert!(!holes.is_empty());
    // Every captured byte sits at its true offset.
    let first_seq_offset = {
        let first = cap
            .packets
            .iter()
            .filter(|p| p.src() == ino_a)
            .map(udstrace_tests::Pkt::seq)
            .min()
            .unwrap();
        u64::from(first - 1)
    };
    let mut pos = 0u64;
    for (off, len) in holes
        .iter()
        .copied()
        .chain(std::iter::once((stream.len() as u64, 0)))
    {
        let start = first_seq_offset as usize + pos as usize;
        let end = first_seq_offset as usize + off as usize;
        assert!(
            stream[pos as usize..off as usize] == sent[start..end],
            "bytes {pos}..{off} misplaced"
        );
        pos = off + len;
    }
}

/// Back-to-back short connections (the kernel reuses the memory of closed sockets at once):
/// each is its own conversation for tshark, with no false retransmissions.
#[test]
fn sequential_connections_are_distinct_conversations() {
    let dir = TempDir::new("sequential");
    let path = dir.path("server.sock");
    // Only these connections: the other tests of this process run at the same time.
    let listener = UnixListener::bind(&path).unwrap();
    let (ud, file) = start_capture(&dir, &["--path", path.to_str().unwrap()]);
    for i in 0..10u8 {
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(&[b'q', i]).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 2];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(&[b'r', i]).unwrap();
        client.read_exact(&mut buf).unwrap();
    }
    let done = ud.stop();
    assert!(done.success);
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.analysis.flags",
            "-e",
            "tcp.payload",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 20, "{text}");
    let streams: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(streams.len(), 10, "{text}");
    assert!(
        rows.iter().all(|r| r[1].is_empty()),
        "TCP analysis flags: {text}"
    );
    for i in 0..10u8 {
        let q = format!("71{i:02x}");
        let r = format!("72{i:02x}");
        let stream_of = |p: &str| {
            rows.iter()
                .find(|row| row[2] == p)
                .map(|row| row[0])
                .unwrap()
        };
        assert_eq!(
            stream_of(&q),
            stream_of(&r),
            "request {i} and its reply share a conversation"
        );
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

#[path = "capture/endpoints.rs"]
mod endpoints;
