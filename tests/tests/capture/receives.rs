//! Receives (`--recv`): every way of reading, as inbound packets of the conversation.

use super::{endpoints::recv_closing_fds, *};

/// `--recv` on a socketpair: every way of reading, partial reads and a peek; the receives
/// are inbound packets of the same conversation, their bytes exactly what was read, their
/// sequence numbers the reading socket's byte count.
#[test]
fn receives_are_inbound_packets() {
    let dir = TempDir::new("recv");
    let (ud, file) = start_capture(&dir, &["--recv"]);
    let (mut a, b) = UnixStream::pair().unwrap();
    let msg = pattern(7, 3000);
    a.write_all(&msg).unwrap();
    let mut read = Vec::new();
    let mut buf = vec![0u8; 1000];
    // recv with MSG_PEEK: not a receive.
    let n = check(sys::recv(&b, &mut buf[..10], libc::MSG_PEEK));
    assert_eq!(n, 10);
    // read(2)
    let n = check(sys::read(&b, &mut buf[..700]));
    read.extend_from_slice(&buf[..n]);
    // recvfrom
    let n = check(sys::recvfrom(&b, &mut buf[..300], 0));
    read.extend_from_slice(&buf[..n]);
    // readv into two buffers
    let (mut first, mut second) = (vec![0u8; 500], vec![0u8; 500]);
    let n = check(sys::readv(&b, &mut [&mut first, &mut second]));
    assert_eq!(n, 1000);
    read.extend_from_slice(&first);
    read.extend_from_slice(&second);
    // recvmsg for the rest
    while read.len() < msg.len() {
        let (more, _) = recv_closing_fds(&b);
        read.extend_from_slice(&more);
    }
    assert_eq!(read, msg);
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let (ino_a, ino_b) = (inode(&a), inode(&b));
    let receives: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| p.meta("dir") == Some("recv") && p.src() == ino_b)
        .collect();
    let sends: Vec<_> = cap
        .packets
        .iter()
        .filter(|p| p.meta("dir").is_none() && p.src() == ino_a)
        .collect();
    assert_eq!(sends.len(), 1);
    let syscalls: Vec<&str> = receives.iter().filter_map(|p| p.meta("syscall")).collect();
    assert_eq!(syscalls[..4], ["read", "recvfrom", "readv", "recvmsg"]);
    let mut got = Vec::new();
    for r in &receives {
        assert_eq!(r.meta("pid"), Some(own_pid().as_str()));
        assert_eq!(r.dst(), ino_a, "the peer is the socket that sent the bytes");
        assert_eq!(r.flags.map(|f| f & 3), Some(1), "inbound");
        // From the sender's address to the reader's, sequence = bytes read so far.
        assert_eq!(
            (r.src_addr(), r.dst_addr()),
            (sends[0].src_addr(), sends[0].dst_addr())
        );
        assert_eq!(r.seq(), sends[0].seq().wrapping_add(got.len() as u32));
        got.extend_from_slice(r.payload());
    }
    assert_eq!(got, msg, "the receives hold exactly what was read");
}
