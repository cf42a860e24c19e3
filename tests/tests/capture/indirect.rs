//! Bytes sent without a send call on the process's own buffer: sendfile, splice, io_uring;
//! and sends of a 32-bit task, whose system calls the tracepoint backend does not decode.

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

/// A 32-bit (compat) x86 task: a program without a C library, built here with `gcc -m32
/// -nostdlib`, that writes "compat-hello" three times on a socketpair through `int 0x80`.
/// Every send is recorded with its length and `syscall=compat`; the function hooks read the
/// kernel's own copy of the bytes, the tracepoint backend (which would decode the 32-bit
/// ABI's registers) records `payload=missing`. x86_64 only: an arm64 kernel runs no i386
/// programs.
#[test]
fn compat_task_sends() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("32-bit x86 tasks run on x86_64 kernels only: skipped");
        return;
    }
    let dir = TempDir::new("compat");
    let source = dir.path("c32.c");
    // i386 system calls: socketpair 360, write 4, read 3, exit 1.
    std::fs::write(
        &source,
        r#"
static long sys(long n, long a, long b, long c, long d) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(n), "b"(a), "c"(b), "d"(c), "S"(d) : "memory");
    return r;
}
void _start(void) {
    int sv[2];
    char buf[64];
    if (sys(360, 1, 1, 0, (long)sv) < 0) sys(1, 2, 0, 0, 0);
    for (int i = 0; i < 3; i++) {
        if (sys(4, sv[0], (long)"compat-hello", 12, 0) != 12) sys(1, 3, 0, 0, 0);
        sys(3, sv[1], (long)buf, sizeof buf, 0);
    }
    sys(1, 0, 0, 0, 0);
}
"#,
    )
    .unwrap();
    let program = dir.path("udst-compat32");
    let built = std::process::Command::new("gcc")
        .args([
            "-m32",
            "-nostdlib",
            "-static",
            "-fno-pie",
            "-no-pie",
            "-O1",
            "-o",
        ])
        .arg(&program)
        .arg(&source)
        .status()
        .expect("gcc");
    assert!(built.success(), "gcc -m32 -nostdlib");
    let file = dir.path("capture.pcapng");
    let ud = Udstrace::start(&["--comm", "udst-compat32", "-w", file.to_str().unwrap()]);
    let status = std::process::Command::new(&program).status().unwrap();
    assert!(status.success(), "the 32-bit program: {status}");
    let backend = ud.backend().to_string();
    let done = ud.stop();
    assert!(done.success);
    let cap = read_capture(&file);
    assert_eq!(cap.packets.len(), 3, "one packet per write");
    for p in &cap.packets {
        assert_eq!(p.meta("syscall"), Some("compat"), "{}", p.comment);
        assert_eq!(p.meta("msg_len"), Some("12"), "{}", p.comment);
        if backend == "tracepoint" {
            assert_eq!(p.meta("payload"), Some("missing"), "{}", p.comment);
            assert!(p.payload().is_empty());
        } else {
            assert_eq!(p.payload(), b"compat-hello", "{}", p.comment);
        }
    }
}
