//! Datagram and seqpacket sockets: message boundaries, sendmmsg, socket names.

use super::*;

/// Datagram and seqpacket sockets keep message boundaries, including empty datagrams;
/// sendmmsg messages each become a packet; named and abstract sockets show their names.
#[test]
fn datagrams_seqpackets_and_names() {
    let dir = TempDir::new("dgram");
    let (ud, file) = start_capture(&dir, &[]);

    // dgram socketpair with sendmmsg (three messages, one empty, one of two iovecs) and send.
    let (d1, d2) = check(sys::socketpair(libc::SOCK_DGRAM));
    let (ino_d1, ino_d2) = (inode(&d1), inode(&d2));
    let m: Vec<Vec<u8>> = (0..4)
        .map(|i| pattern(50 + i, 10 + i as usize * 300))
        .collect();
    sendmmsg(&d1, &[&[&m[0]], &[], &[&m[1], &m[2]]]);
    check(sys::send(&d1, &m[3], 0));
    let expected_d1 = vec![
        m[0].clone(),
        Vec::new(),
        [m[1].clone(), m[2].clone()].concat(),
        m[3].clone(),
    ];

    // seqpacket socketpair: a 100 KiB record, split over several packets of one message.
    let (s1, s2) = check(sys::socketpair(libc::SOCK_SEQPACKET));
    let ino_s1 = inode(&s1);
    let rec = pattern(60, 50_000);
    let n = check(sys::sendmsg(
        &s1,
        &[&rec[..20_000], &rec[20_000..]],
        &[],
        libc::MSG_NOSIGNAL,
    ));
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
        check(sys::recv(&d2, &mut buf, 0));
    }
    let got = check(sys::recv(&s2, &mut buf, 0));
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

    let (d1, d2) = check(sys::socketpair(libc::SOCK_DGRAM));
    let ino_d1 = inode(&d1);
    let sndbuf: libc::c_int = 8192;
    check(sys::setsockopt_int(
        &d1,
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        sndbuf,
    ));
    const ENTRIES: usize = 16;
    let mut vector = sys::MmsgVector::new(ENTRIES, 2000);

    let mut expected = Vec::new();
    let mut buf = vec![0u8; 4096];
    for call in 0..3u64 {
        // New contents in the same buffers, behind the same vector.
        for i in 0..ENTRIES {
            let b = vector.buffer_mut(i);
            b.copy_from_slice(&pattern(call * 100 + i as u64, b.len()));
        }
        let n = vector
            .send(&d1, libc::MSG_DONTWAIT)
            .expect("sendmmsg sent some");
        assert!(
            (1..ENTRIES).contains(&n),
            "a {sndbuf}-byte send buffer takes only some of {ENTRIES} messages, not {n}"
        );
        expected.extend(vector.buffers()[..n].iter().cloned());
        for _ in 0..n {
            check(sys::recv(&d2, &mut buf, 0));
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
