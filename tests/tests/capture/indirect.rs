//! Bytes sent without a send call on the process's own buffer: sendfile, splice, io_uring.

use super::*;

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
        moved += check(sys::sendfile(&a, &f, &mut off, content.len() - moved));
    }
    // splice from a pipe.
    let (pipe_r, pipe_w) = check(sys::pipe());
    let spliced = b"spliced bytes";
    assert_eq!(check(sys::write(&pipe_w, spliced)), spliced.len());
    let n = check(sys::splice(&pipe_r, &a, spliced.len(), 0));
    assert_eq!(n, spliced.len());
    drop((pipe_r, pipe_w));
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
