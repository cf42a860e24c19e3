//! (Test code: lengths are cast freely; a wrong cast fails the test.)
#![allow(clippy::cast_possible_truncation, clippy::items_after_statements)]

//! Running as root on a shared machine: the output path as another user may have prepared it
//! (symbolic links, planted files and FIFOs), stops that always stop whatever the output is
//! doing (a pipe nobody reads, a FIFO without a reader, SIGHUP), a full disk, and reading
//! captures back from a pipe, cut short, or with a damaged packet.
//!
//! The other user is `nobody` (uid 65534), as `setpriv` makes it: files are planted by a real
//! process of that user, not chowned. Stop times are liveness bounds (a stop that does not
//! happen), not benchmarks: the bound is three times the one promised, and the measured times
//! are printed.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::{
        fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
        net::UnixStream,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use udstrace_tests::{
    inode, own_pid, pattern, read_capture, sys, udstrace_bin, Finished, TempDir, Udstrace,
};

/// The user that plants things.
const NOBODY: u32 = 65_534;

/// The tests capture this process's own traffic (`-p` of the test binary), whose threads run
/// the tests side by side: one at a time, or each would see the others' messages.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `args` as `nobody`; they must succeed.
fn as_nobody(args: &[&str]) {
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .status()
        .expect("setpriv (util-linux)");
    assert!(status.success(), "as nobody: {args:?}");
}

/// A directory like /tmp: everyone may create files in it, the sticky bit keeps them from
/// removing each other's.
fn sticky_dir(dir: &TempDir) -> PathBuf {
    let shared = dir.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o1777)).unwrap();
    shared
}

/// A directory of `nobody`'s own (no sticky bit: the kernel's `protected_*` settings, which
/// only look at sticky world-writable directories, do not apply).
fn nobodys_dir(dir: &TempDir) -> PathBuf {
    let own = dir.path("nobody");
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).unwrap();
    own
}

/// Runs udstrace with `args` until it exits or says it is listening (it took the output:
/// then it is stopped with SIGTERM).
fn run_until_listening(args: &[&str]) -> Finished {
    let mut child = Command::new(udstrace_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn udstrace");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let started = Instant::now();
    while let Ok(line) = rx.recv_timeout(Duration::from_mins(3)) {
        let listening = line.starts_with("listening on");
        lines.push(line);
        if listening {
            thread::sleep(Duration::from_millis(200));
            let _ = sys::kill(child.id().cast_signed(), libc::SIGTERM);
            break;
        }
        assert!(started.elapsed() < Duration::from_mins(3), "{lines:?}");
    }
    let status = child.wait().unwrap();
    lines.extend(rx.iter());
    Finished {
        success: status.success(),
        code: status.code(),
        stdout: String::new(),
        stderr: lines,
    }
}

/// udstrace refused `path` with one line naming it and saying why.
fn assert_refused(out: &Finished, path: &Path, why: &str) {
    assert!(
        !out.success,
        "{} was written: {:?}",
        path.display(),
        out.stderr
    );
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    let line = &out.stderr[0];
    assert!(
        line.starts_with(&format!("udstrace: refusing to write {}: ", path.display())),
        "{line}"
    );
    assert!(line.contains(why), "{line}");
}

/// A symbolic link that `nobody` planted at the output path, to a file of root's: refused,
/// and the file keeps its bytes and mode. In a sticky directory, where the kernel itself may
/// refuse to follow it (`fs.protected_symlinks`), and in `nobody`'s own, where it never does.
#[test]
fn symlink_planted_by_another_user_is_refused() {
    let _serial = serial();
    let dir = TempDir::new("safety-symlink");
    let target = dir.path("root-owned");
    std::fs::write(&target, b"precious").unwrap();
    std::fs::set_permissions(&target, PermissionsExt::from_mode(0o644)).unwrap();
    for place in [sticky_dir(&dir), nobodys_dir(&dir)] {
        let link = place.join("capture.pcapng");
        as_nobody(&["ln", "-s", target.to_str().unwrap(), link.to_str().unwrap()]);
        let out = run_until_listening(&["-p", &own_pid(), "-w", link.to_str().unwrap()]);
        assert_refused(&out, &link, "it is a symbolic link");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    }
}

/// A file that `nobody` created at the output path stays `nobody`'s and empty: udstrace does
/// not write a capture another user can read.
#[test]
fn file_planted_by_another_user_is_refused() {
    let _serial = serial();
    let dir = TempDir::new("safety-file");
    for place in [sticky_dir(&dir), nobodys_dir(&dir)] {
        let planted = place.join("capture.pcapng");
        as_nobody(&["touch", planted.to_str().unwrap()]);
        let out = run_until_listening(&["-p", &own_pid(), "-w", planted.to_str().unwrap()]);
        assert_refused(&out, &planted, "it is a file of user nobody (65534)");
        let meta = std::fs::metadata(&planted).unwrap();
        assert_eq!((meta.uid(), meta.len()), (NOBODY, 0));
    }
}

/// A FIFO that `nobody` made at the output path, with `nobody` reading it: refused, and not
/// one byte comes out of it.
#[test]
fn fifo_planted_by_another_user_is_refused() {
    let _serial = serial();
    let dir = TempDir::new("safety-fifo");
    let fifo = sticky_dir(&dir).join("capture.pcapng");
    as_nobody(&["mkfifo", "-m", "0666", fifo.to_str().unwrap()]);
    // The planter's reader, already there (so that opening the FIFO to write would not wait).
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let out = run_until_listening(&["-p", &own_pid(), "-w", fifo.to_str().unwrap()]);
    assert_refused(&out, &fifo, "it is a FIFO of user nobody (65534)");
    let mut got = Vec::new();
    match reader.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
    }
    assert!(
        got.is_empty(),
        "{} bytes reached the planted FIFO",
        got.len()
    );
}

/// Sends a few messages on a socket pair of this process, for captures to hold.
fn some_traffic() -> u64 {
    let (mut a, b) = UnixStream::pair().unwrap();
    for i in 0..3 {
        a.write_all(&pattern(i, 100)).unwrap();
    }
    drop(b);
    inode(&a)
}

/// A new file is created 0600; an existing file of one's own is emptied and replaced in place
/// (the same inode, as tcpdump does) with mode 0600; a file with another name (a hard link),
/// a directory and a device are refused.
#[test]
fn own_files_are_replaced_others_refused() {
    let _serial = serial();
    let dir = TempDir::new("safety-own");
    let new = dir.path("new.pcapng");
    let ud = Udstrace::start(&["-p", &own_pid(), "-w", new.to_str().unwrap()]);
    some_traffic();
    assert!(ud.stop().success);
    assert_eq!(std::fs::metadata(&new).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(read_capture(&new).packets.len(), 3);

    let own = dir.path("own.pcapng");
    std::fs::write(&own, vec![b'x'; 100_000]).unwrap();
    std::fs::set_permissions(&own, PermissionsExt::from_mode(0o644)).unwrap();
    let ino = std::fs::metadata(&own).unwrap().ino();
    let ud = Udstrace::start(&["-p", &own_pid(), "-w", own.to_str().unwrap()]);
    some_traffic();
    assert!(ud.stop().success);
    let meta = std::fs::metadata(&own).unwrap();
    assert_eq!((meta.ino(), meta.mode() & 0o7777), (ino, 0o600));
    let cap = read_capture(&own);
    assert_eq!(cap.packets.len(), 3);
    assert!(cap.ends_with_stats, "nothing of the old bytes is left");

    let linked = dir.path("linked.pcapng");
    let other_name = dir.path("other-name");
    std::fs::write(&linked, b"keep").unwrap();
    std::fs::hard_link(&linked, &other_name).unwrap();
    let out = run_until_listening(&["-p", &own_pid(), "-w", linked.to_str().unwrap()]);
    assert_refused(&out, &linked, "it has 2 hard links");
    assert_eq!(std::fs::read(&other_name).unwrap(), b"keep");

    let sub = dir.path("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = run_until_listening(&["-p", &own_pid(), "-w", sub.to_str().unwrap()]);
    assert_refused(&out, &sub, "it is a directory");
    let out = run_until_listening(&["-p", &own_pid(), "-w", "/dev/full"]);
    assert_refused(&out, Path::new("/dev/full"), "it is a device");
}

/// Writes 4 KiB chunks on a socket pair of this process until `stop` (or 20 s), draining the
/// other end; returns how many.
fn flood(stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let reader = thread::spawn(move || std::io::copy(&mut b, &mut std::io::sink()));
        let chunk = pattern(3, 4096);
        let started = Instant::now();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
            a.write_all(&chunk).unwrap();
            n += 1;
        }
        drop(a);
        reader.join().unwrap().unwrap();
        n
    })
}

/// Sends `signals` to udstrace (20 ms apart) and waits for it to exit, at most 10 s; returns
/// how long it took after the first signal.
fn signal_and_time(ud: &mut Udstrace, signals: &[libc::c_int]) -> Duration {
    let start = Instant::now();
    for (i, &s) in signals.iter().enumerate() {
        if i > 0 {
            thread::sleep(Duration::from_millis(20));
        }
        sys::kill(ud.pid().cast_signed(), s).unwrap();
    }
    while ud.running() && start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

/// The number in the stderr line that holds `words`, just before them.
fn count_before(done: &Finished, words: &str) -> u64 {
    let line = done
        .stderr
        .iter()
        .find(|l| l.contains(words))
        .unwrap_or_else(|| panic!("no `{words}` in {:?}", done.stderr));
    let before = line.split(words).next().unwrap();
    before.split_whitespace().last().unwrap().parse().unwrap()
}

/// udstrace writing to standard output, a pipe that nothing reads (`udstrace -w - | sleep`),
/// under heavy traffic: SIGINT, SIGTERM and SIGHUP each end it within a second (bound: 3 s),
/// saying the output was blocked and how many packets it could not write, then the summary.
/// Two SIGINTs end it at once, with 130.
#[test]
fn stops_with_a_blocked_pipe() {
    let _serial = serial();
    let cases: &[(&str, &[libc::c_int], i32, &str)] = &[
        (
            "SIGINT",
            &[libc::SIGINT],
            1,
            "took nothing for 500 ms after the stop",
        ),
        (
            "SIGTERM",
            &[libc::SIGTERM],
            1,
            "took nothing for 500 ms after the stop",
        ),
        (
            "SIGHUP",
            &[libc::SIGHUP],
            1,
            "took nothing for 500 ms after the stop",
        ),
        (
            "SIGINT twice",
            &[libc::SIGINT, libc::SIGINT],
            130,
            "stopped at once by a second signal",
        ),
    ];
    for &(name, signals, code, says) in cases {
        let mut ud = Udstrace::start(&["-p", &own_pid(), "-w", "-"]);
        // Held, never read: the pipe fills.
        let mut pipe = ud.take_stdout();
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = flood(stop.clone());
        // Far more than the pipe (64 KiB) and udstrace's queue (8 MiB) hold.
        thread::sleep(Duration::from_millis(1500));
        let took = signal_and_time(&mut ud, signals);
        stop.store(true, Ordering::Relaxed);
        let chunks = traffic.join().unwrap();
        eprintln!("{name}: exited {took:?} after the signal ({chunks} chunks of 4 KiB sent)");
        if ud.running() {
            drop(pipe);
            let done = ud.wait();
            panic!(
                "{name}: still running 10 s after the signal: {:?}",
                done.stderr
            );
        }
        let mut head = [0u8; 4];
        pipe.read_exact(&mut head).unwrap();
        assert_eq!(
            head,
            [0x0a, 0x0d, 0x0d, 0x0a],
            "a pcapng section starts the pipe"
        );
        let done = ud.wait();
        assert!(took < Duration::from_secs(3), "{name}: {took:?}");
        assert_eq!(done.code, Some(code), "{name}: {:?}", done.stderr);
        let unwritten = count_before(&done, "packets and the statistics block were not written");
        assert!(
            done.stderr.iter().any(|l| l.contains(says)),
            "{:?}",
            done.stderr
        );
        let (packets, _) = done.summary();
        assert!(
            unwritten > 0 && unwritten <= packets,
            "{name}: {unwritten} of {packets} not written"
        );
        assert!(
            done.stderr.last().unwrap().contains("packets captured"),
            "the summary comes last: {:?}",
            done.stderr
        );
    }
}

/// A FIFO of one's own that nobody opens to read: udstrace waits for a reader as tcpdump
/// does, yet SIGTERM still ends it, saying nothing could be written.
#[test]
fn stops_with_a_fifo_nobody_reads() {
    let _serial = serial();
    let dir = TempDir::new("safety-unread-fifo");
    let fifo = dir.path("capture.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let mut ud = Udstrace::start(&["-p", &own_pid(), "-w", fifo.to_str().unwrap()]);
    some_traffic();
    thread::sleep(Duration::from_millis(200));
    let took = signal_and_time(&mut ud, &[libc::SIGTERM]);
    eprintln!("FIFO without a reader: exited {took:?} after SIGTERM");
    if ud.running() {
        // Let it go: open the FIFO to read.
        let _ = std::fs::File::open(&fifo);
    }
    let done = ud.wait();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(done.code, Some(1), "{:?}", done.stderr);
    assert_eq!(
        count_before(&done, "packets and the statistics block were not written"),
        3
    );
    assert_eq!(done.summary(), (3, 0));
}

/// SIGHUP (the terminal or SSH session went away) ends a capture as SIGTERM does: a valid
/// file ending with its statistics, the summary, exit 0. Under `nohup` SIGHUP is left
/// ignored.
#[test]
fn sighup_ends_a_capture_like_sigterm() {
    let _serial = serial();
    let dir = TempDir::new("safety-hup");
    let file = dir.path("capture.pcapng");
    let mut ud = Udstrace::start(&["-p", &own_pid(), "-w", file.to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = flood(stop.clone());
    thread::sleep(Duration::from_secs(1));
    let took = signal_and_time(&mut ud, &[libc::SIGHUP]);
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    eprintln!("SIGHUP with a file: exited {took:?} after the signal");
    let done = ud.wait();
    assert_eq!(done.code, Some(0), "{:?}", done.stderr);
    let (packets, lost) = done.summary();
    let cap = read_capture(&file);
    assert!(cap.ends_with_stats);
    assert_eq!(cap.packets.len() as u64, packets);
    assert_eq!(cap.stats, Some((packets + lost, lost)));
    assert!(packets > 50, "captured {packets}");

    let mut nohup = Command::new("nohup");
    nohup
        .arg(udstrace_bin())
        .args(["-p", &own_pid(), "-w", file.to_str().unwrap()]);
    let mut ud = Udstrace::start_command(nohup);
    sys::kill(ud.pid().cast_signed(), libc::SIGHUP).unwrap();
    thread::sleep(Duration::from_millis(500));
    assert!(ud.running(), "SIGHUP stopped a capture run under nohup");
    some_traffic();
    let done = ud.stop();
    assert_eq!(done.code, Some(0), "{:?}", done.stderr);
    assert_eq!(done.summary(), (3, 0));
    assert_eq!(read_capture(&file).packets.len(), 3);
}

/// `udstrace -w - | udstrace -r -`: the second shows what the first captures.
#[test]
fn round_trip_through_a_pipe() {
    let _serial = serial();
    let mut writer = Udstrace::start(&["-p", &own_pid(), "-w", "-"]);
    let pcapng = writer.take_stdout();
    let reader = Command::new(udstrace_bin())
        .args(["-r", "-", "-A"])
        .stdin(Stdio::from(pcapng))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino = inode(&a);
    let messages = ["first through the pipe", "second", "third and last"];
    for m in messages {
        a.write_all(m.as_bytes()).unwrap();
    }
    drop(b);
    let done = writer.stop();
    assert!(done.success, "{:?}", done.stderr);
    let read = reader.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(&format!("stream {ino} > ")))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, m) in lines.iter().zip(messages) {
        assert!(line.contains(&format!(", length {}", m.len())), "{line}");
        assert!(stdout.contains(m), "{stdout}");
    }
}

/// A capture of three messages of this process, and where each block of the file starts:
/// (type, offset).
fn three_packet_file(dir: &TempDir) -> (PathBuf, Vec<(u32, usize)>) {
    let file = dir.path("three.pcapng");
    let ud = Udstrace::start(&["-p", &own_pid(), "-w", file.to_str().unwrap()]);
    some_traffic();
    assert!(ud.stop().success);
    let bytes = std::fs::read(&file).unwrap();
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut blocks = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        blocks.push((word(at), at));
        at += word(at + 4) as usize;
    }
    assert_eq!(
        blocks.iter().filter(|(t, _)| *t == 6).count(),
        3,
        "three enhanced packet blocks"
    );
    (file, blocks)
}

/// A file cut in the middle of its third packet: `-r` shows the two whole ones, then says
/// the file ends in the middle of a block, after how many packets.
#[test]
fn cut_short_file_says_so() {
    let _serial = serial();
    let dir = TempDir::new("safety-cut");
    let (file, blocks) = three_packet_file(&dir);
    let third = blocks.iter().filter(|(t, _)| *t == 6).nth(2).unwrap().1;
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..third + 40]).unwrap();
    let out = udstrace_tests::run(&["-r", file.to_str().unwrap()]);
    assert!(!out.success);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert_eq!(
        out.stderr,
        [format!(
            "udstrace: cannot read {}: file ends in the middle of a block after 2 packets (cut \
             short?)",
            file.display()
        )]
    );
}

/// A packet whose metadata comment is damaged is shown without it; the others as always; a
/// line at the end counts it.
#[test]
fn damaged_comment_does_not_stop_reading() {
    let _serial = serial();
    let dir = TempDir::new("safety-comment");
    let (file, blocks) = three_packet_file(&dir);
    let second = blocks.iter().filter(|(t, _)| *t == 6).nth(1).unwrap().1;
    let mut bytes = std::fs::read(&file).unwrap();
    // `type=` becomes `typo=`: a comment without the type it must have. Same length, so the
    // blocks stay whole.
    let at = second
        + bytes[second..]
            .windows(5)
            .position(|w| w == b"type=")
            .unwrap();
    bytes[at + 3] = b'o';
    std::fs::write(&file, &bytes).unwrap();
    let out = udstrace_tests::run(&["-r", file.to_str().unwrap()]);
    assert!(out.success, "{:?}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].contains(" stream "), "{}", lines[0]);
    assert!(
        lines[1].ends_with(" [no udstrace metadata], length 100"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(" stream "), "{}", lines[2]);
    assert_eq!(out.stderr.len(), 1, "{:?}", out.stderr);
    assert!(
        out.stderr[0]
            .starts_with("udstrace: warning: 1 of 3 packets had no readable udstrace metadata"),
        "{:?}",
        out.stderr
    );
    assert!(
        out.stderr[0].contains("(the first, packet 2: ") && out.stderr[0].contains("no type="),
        "{:?}",
        out.stderr
    );
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk: the capture stops with one line saying so and how many packets were not
/// written, then the summary; the file holds whole blocks, exactly the packets written.
#[test]
fn full_disk_still_prints_the_summary() {
    let _serial = serial();
    let dir = TempDir::new("safety-full");
    let small = dir.path("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "udstrace-test"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _mount = Mount(small.clone());
    let file = small.join("capture.pcapng");
    let mut ud = Udstrace::start(&["-p", &own_pid(), "-w", file.to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = flood(stop.clone());
    let started = Instant::now();
    while ud.running() && started.elapsed() < Duration::from_secs(15) {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let done = ud.stop();
    assert_eq!(done.code, Some(1), "{:?}", done.stderr);
    let unwritten = count_before(&done, "packets were not written");
    let error = done
        .stderr
        .iter()
        .find(|l| l.contains("packets were not written"))
        .unwrap();
    assert!(
        error.starts_with(&format!(
            "udstrace: cannot write {}: No space left on device",
            file.display()
        )),
        "{error}"
    );
    let (packets, _) = done.summary();
    assert!(done.stderr.last().unwrap().contains("packets captured"));
    let cap = read_capture(&file);
    assert!(!cap.packets.is_empty());
    assert_eq!(cap.packets.len() as u64, packets - unwritten);
}
