//! Stream sockets: every send call, large and partial sends, a client that sends before
//! the server accepts, back-to-back connections.

use super::*;

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
    let n = check(sys::write(&a, &p[0]));
    a_sent.extend_from_slice(&p[0][..n]);
    // send / sendto
    let n = check(sys::send(&a, &p[1], 0));
    a_sent.extend_from_slice(&p[1][..n]);
    let n = check(sys::sendto(&a, &p[2], 0));
    a_sent.extend_from_slice(&p[2][..n]);
    // writev with an empty iovec in the middle
    let n = check(sys::writev(&a, &[&p[3], b"", &p[4], &p[5]]));
    assert_eq!(n, p[3].len() + p[4].len() + p[5].len());
    a_sent.extend(p[3].iter().chain(&p[4]).chain(&p[5]));
    // sendmsg with three iovecs
    let n = check(sys::sendmsg(
        &a,
        &[&p[6], &p[7], &p[8]],
        &[],
        libc::MSG_NOSIGNAL,
    ));
    assert_eq!(n, p[6].len() + p[7].len() + p[8].len());
    a_sent.extend(p[6].iter().chain(&p[7]).chain(&p[8]));
    // sendmmsg on a stream socket: two messages
    sendmmsg(&a, &[&[&p[9]], &[&p[10], &p[11]]]);
    a_sent.extend(p[9].iter().chain(&p[10]).chain(&p[11]));
    // pwritev2 with offset -1 (the socket's "current position")
    let n = check(sys::pwritev2(&a, &[b"pwritev2:", &p[0]], -1, 0));
    a_sent.extend(b"pwritev2:".iter().chain(&p[0]).take(n));
    // empty write: nothing on the wire
    check(sys::write(&a, b""));
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
    let n = check(sys::writev(&a, &refs));
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

/// 32 MiB through a 1 MiB ring buffer, in 64 KiB writes: the buffer turns over 32 times, and
/// at most turns a record runs past its end (udstrace maps the buffer's data once and puts
/// such a record's two parts together). Every byte captured is the byte sent at its offset;
/// what a full buffer cost is counted, and most of the stream is there.
#[test]
fn records_across_the_ring_buffers_end_are_whole() {
    let dir = TempDir::new("wrap");
    let (ud, file) = start_capture(&dir, &["-B", "1024"]);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    let reader = drain(b);
    let sent = pattern(77, 32 << 20);
    // The first bytes alone, so that the stream's first segment (its offset 0) is captured.
    a.write_all(&sent[..100]).unwrap();
    thread::sleep(Duration::from_millis(100));
    for (i, chunk) in sent[100..].chunks(64 << 10).enumerate() {
        a.write_all(chunk).unwrap();
        // About 64 MB/s: an eighth of the buffer wakes the capture every 2 ms.
        if i % 2 == 1 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    drop(a);
    assert_eq!(reader.join().unwrap(), sent);
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let (_, lost) = done.summary();
    let cap = read_capture(&file);
    let (stream, holes) = tcp_stream(&cap.packets, ino_a);
    let missing: u64 = holes.iter().map(|&(_, len)| len).sum();
    assert_eq!(holes.is_empty(), lost == 0, "holes {holes:?}, {lost} lost");
    let mut expected = sent[..stream.len()].to_vec();
    for &(start, len) in &holes {
        expected[start as usize..(start + len) as usize].fill(0);
    }
    assert!(
        stream == expected,
        "captured bytes differ from the bytes sent"
    );
    let kept = stream.len() as u64 - missing;
    assert!(
        kept >= 24 << 20,
        "{kept} bytes kept of {} ({lost} segments lost): the buffer turned over too few times",
        sent.len()
    );
}

/// Non-blocking sends that the kernel takes only in part, sends that fail with EAGAIN, and
/// sends that fail with EPIPE: the capture holds exactly the accepted bytes.
#[test]
fn partial_writes_record_accepted_bytes() {
    let dir = TempDir::new("partial");
    let (ud, file) = start_capture(&dir, &[]);
    let (a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    check(sys::set_nonblocking(&a));
    let chunk = pattern(7, 300_000);
    let mut accepted = Vec::new();
    let mut received = Vec::new();
    let mut partial = 0;
    let mut eagain = 0;
    for round in 0..40 {
        let n = match sys::send(&a, &chunk, libc::MSG_NOSIGNAL) {
            Ok(n) => n,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EAGAIN));
                eagain += 1;
                if round % 3 == 0 {
                    // Let the reader make some room.
                    let mut buf = vec![0u8; 100_000];
                    let got = (&b).read(&mut buf).unwrap();
                    received.extend_from_slice(&buf[..got]);
                }
                continue;
            }
        };
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
    check(sys::set_nonblocking(&b));
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
    let rc = sys::send(&a, &chunk[..10], libc::MSG_NOSIGNAL);
    assert_eq!(rc.map_err(|e| e.raw_os_error()), Err(Some(libc::EPIPE)));

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
