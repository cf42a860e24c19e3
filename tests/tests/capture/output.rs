//! What udstrace writes and says: snap length, SIGTERM, the text view and `-r`, errors,
//! losses.

use super::*;

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
        (&["--path", ""], "--path is empty"),
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

/// Sends `udstrace` `signal` (SIGSTOP, SIGCONT) and waits until it is in (or out of) the
/// stopped state.
fn stop_or_continue(ud: &Udstrace, signal: libc::c_int) {
    let pid = ud.pid();
    sys::kill(pid.cast_signed(), signal).unwrap();
    let want_stopped = signal == libc::SIGSTOP;
    for _ in 0..2_000 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The state follows the command name, which is in parentheses.
        let state = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('T'));
        if state == Some(want_stopped) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("udstrace did not take signal {signal}");
}

/// A kernel buffer too small for the traffic: losses are counted, reported in the summary,
/// the statistics block and the packets' drop counts, and show as gaps in the TCP stream;
/// no byte is spliced in the wrong place. udstrace is stopped (SIGSTOP) for the first half of
/// the traffic, so that nothing drains its 64 KiB buffer whatever the machine's load: the
/// kernel programs still record, and lose all but what fits.
#[test]
fn losses_are_counted_and_show_as_gaps() {
    let dir = TempDir::new("loss");
    losses_counted(&dir, &["-B", "64"]);
}

/// The same once udstrace has become `nobody` (`-Z`), with no privilege left: the loss
/// counters are still read (before 6.5, with `kernel.unprivileged_bpf_disabled` set as
/// Debian sets it, the kernel refuses every bpf(2) call to such a task, so they are read from
/// memory the map shares).
#[test]
fn losses_are_counted_after_dropping_privileges() {
    const NOBODY: u32 = 65_534;
    let dir = TempDir::new("loss-z");
    std::os::unix::fs::chown(dir.path(""), Some(NOBODY), Some(NOBODY)).unwrap();
    losses_counted(&dir, &["-B", "64", "-Z", "nobody"]);
}

/// A capture of this process with `extra` options, into `dir`, that loses most of 24 MB.
fn losses_counted(dir: &TempDir, extra: &[&str]) {
    let (ud, file) = start_capture(dir, extra);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino_a = inode(&a);
    let reader = drain(b);
    let mut sent = Vec::new();
    for i in 0..400 {
        if i == 0 {
            stop_or_continue(&ud, libc::SIGSTOP);
        } else if i == 200 {
            stop_or_continue(&ud, libc::SIGCONT);
        }
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
