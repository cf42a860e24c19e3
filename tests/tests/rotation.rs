//! (Test code: lengths are cast freely; a wrong cast fails the test.)
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

//! Rotation as tcpdump rotates: `-C` by size (FILE, FILE1, ...), `-W` a ring of files, `-G`
//! by time with strftime names, `-z` run on each finished file. Every file must be a whole
//! capture of its own (our parser, and tshark), 0600, with its statistics block and the names
//! of its addresses; the bytes
//! sent must all be there, in order across the files; `-r` reads the set back.

use std::{
    io::{Read, Write},
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        net::UnixStream,
    },
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use udstrace_tests::{
    inode, own_pid, pattern, read_capture, run, tcp_stream, udstrace_bin, CaptureFile, Pkt,
    TempDir, Udstrace,
};

/// Bytes of each write: one packet each (under 65,024).
const CHUNK: usize = 16 * 1024;

/// Sends `total` bytes in `CHUNK` writes on a socket pair of this process (the other end
/// drained); the sending socket's inode and the bytes.
fn send(total: usize, seed: u64) -> (u64, Vec<u8>) {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        b.read_to_end(&mut v).unwrap();
        v.len()
    });
    let bytes = pattern(seed, total);
    for chunk in bytes.chunks(CHUNK) {
        a.write_all(chunk).unwrap();
    }
    let ino = inode(&a);
    drop(a);
    assert_eq!(reader.join().unwrap(), total);
    (ino, bytes)
}

/// The files in `dir`, by name.
fn files(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A file of a rotated set checked as a capture of its own: mode 0600, valid pcapng per our
/// parser, ending with a statistics block whose count matches its packets, and read by
/// tshark (`tshark -r` exits 0 and sees as many packets).
fn whole_capture(path: &Path) -> CaptureFile {
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600, "{}", path.display());
    let cap = read_capture(path);
    assert!(
        cap.ends_with_stats,
        "{} has no statistics block",
        path.display()
    );
    let (received, dropped) = cap.stats.unwrap();
    assert_eq!(
        received - dropped,
        cap.packets.len() as u64,
        "{}",
        path.display()
    );
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark -r {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = String::from_utf8(out.stdout).unwrap().lines().count();
    assert_eq!(frames, cap.packets.len(), "{}", path.display());
    cap
}

/// Each file names its own addresses (name resolution blocks): tshark with name resolution
/// shows this process (`COMM[PID]`, the thread's command) as the source and destination of
/// each of the file's `packets`.
fn named_in_itself(path: &Path, packets: usize) {
    let out = Command::new("tshark")
        .args(["-N", "n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "ipv6.src_host", "-e", "ipv6.dst_host"])
        .output()
        .expect("run tshark");
    let text = String::from_utf8(out.stdout).unwrap();
    let ours = format!("[{}]", own_pid());
    let named = text
        .lines()
        .filter(|l| l.split('\t').all(|host| host.ends_with(&ours)))
        .count();
    assert_eq!(named, packets, "{}: {text}", path.display());
}

/// `-C 1` with 5 MB of traffic: FILE, FILE1, ... each over a million bytes before it ends and
/// at most a packet and its statistics block beyond; every byte sent in them, in order; `-r`
/// of the set prints every packet.
#[test]
fn size_rotation_keeps_every_byte_in_order() {
    let dir = TempDir::new("rotate-size");
    let pattern_path = dir.path("cap.pcapng");
    let ud = Udstrace::start(&[
        "-p",
        &own_pid(),
        "-w",
        pattern_path.to_str().unwrap(),
        "-C",
        "1",
    ]);
    let (ino, sent) = send(5_000_000, 1);
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let (packets, lost) = done.summary();
    assert_eq!(lost, 0);

    let names = files(&dir);
    let n = names.len();
    assert!(n >= 5, "{names:?}");
    let expected: Vec<String> = (0..n)
        .map(|i| {
            if i == 0 {
                "cap.pcapng".to_string()
            } else {
                format!("cap.pcapng{i}")
            }
        })
        .collect();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    let mut all: Vec<Pkt> = Vec::new();
    for (i, name) in expected.iter().enumerate() {
        let path = dir.path(name);
        let cap = whole_capture(&path);
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(
            len <= 1_000_000 + CHUNK as u64 + 2_000,
            "{name}: {len} bytes"
        );
        if i + 1 < n {
            assert!(len > 1_000_000, "{name} ended early: {len} bytes");
        }
        assert!(!cap.packets.is_empty(), "{name}");
        named_in_itself(&path, cap.packets.len());
        all.extend(cap.packets);
    }
    assert_eq!(all.len() as u64, packets);
    // In order across the files: each packet of the socket starts where the last one ended.
    let ours: Vec<&Pkt> = all.iter().filter(|p| p.src() == ino).collect();
    for pair in ours.windows(2) {
        assert_eq!(
            pair[1].seq(),
            pair[0].seq().wrapping_add(pair[0].payload_len() as u32)
        );
    }
    let (stream, holes) = tcp_stream(&all, ino);
    assert!(holes.is_empty(), "{holes:?}");
    assert!(
        stream == sent,
        "the bytes across the files are not those sent"
    );

    // -r of the set, in order: one line per packet.
    let paths: Vec<PathBuf> = expected.iter().map(|n| dir.path(n)).collect();
    let out = Command::new(udstrace_bin())
        .arg("-r")
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap().lines().count() as u64;
    assert_eq!(lines, packets);
    // -c counts across files, with -r given again.
    let mut args = vec!["-c".to_string(), (packets - 3).to_string()];
    for p in &paths {
        args.push("-r".into());
        args.push(p.to_str().unwrap().into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args);
    assert!(out.success, "{:?}", out.stderr);
    assert_eq!(out.stdout.lines().count() as u64, packets - 3);
}

/// `-C 1 -W 3` with 7 MB: only FILE0, FILE1 and FILE2 remain, and they hold the newest bytes,
/// up to the last one sent, without a gap.
#[test]
fn ring_keeps_the_newest_files() {
    let dir = TempDir::new("rotate-ring");
    let pattern_path = dir.path("cap.pcapng");
    let ud = Udstrace::start(&[
        "-p",
        &own_pid(),
        "-w",
        pattern_path.to_str().unwrap(),
        "-C",
        "1",
        "-W",
        "3",
    ]);
    let (ino, sent) = send(7_000_000, 2);
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    assert_eq!(done.summary().1, 0);
    assert_eq!(files(&dir), ["cap.pcapng0", "cap.pcapng1", "cap.pcapng2"]);
    let mut caps: Vec<CaptureFile> = files(&dir)
        .iter()
        .map(|n| whole_capture(&dir.path(n)))
        .collect();
    caps.sort_by_key(|c| c.packets.first().map_or(u64::MAX, |p| p.ts_ns));
    let all: Vec<Pkt> = caps.into_iter().flat_map(|c| c.packets).collect();
    let (stream, holes) = tcp_stream(&all, ino);
    assert!(holes.is_empty(), "{holes:?}");
    assert!(stream.len() > 2_000_000, "{} bytes", stream.len());
    assert!(stream.len() < 4_000_000, "{} bytes", stream.len());
    assert!(
        sent.ends_with(&stream),
        "the ring does not hold the last bytes sent"
    );
}

/// Days since 1970-01-01 to (year, month, day), for names in UTC.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `cap-%Y%m%d-%H%M%S.pcapng` of `secs`, in UTC.
fn utc_name(secs: i64) -> String {
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "cap-{y:04}{mo:02}{d:02}-{:02}{:02}{:02}.pcapng",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `-G 1` with a strftime name over 3.5 s of traffic (in UTC): one file a second, named by the
/// second it began, holding the packets of that second; `-z` ran once on each, after it was
/// complete; no zombie left while the capture runs.
#[test]
fn time_rotation_with_strftime_names_and_a_command() {
    let dir = TempDir::new("rotate-time");
    let out_dir = dir.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let log = dir.path("z.log");
    let script = dir.path("record");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $(stat -c %s \"$1\")\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, PermissionsExt::from_mode(0o755)).unwrap();
    let name = out_dir.join("cap-%Y%m%d-%H%M%S.pcapng");
    let mut cmd = Command::new(udstrace_bin());
    cmd.env("TZ", "UTC").args([
        "-p",
        &own_pid(),
        "-w",
        name.to_str().unwrap(),
        "-G",
        "1",
        "-z",
        script.to_str().unwrap(),
    ]);
    let ud = Udstrace::start_command(cmd);
    let (mut a, b) = UnixStream::pair().unwrap();
    let ino = inode(&a);
    let started = Instant::now();
    let mut messages = 0u64;
    while started.elapsed() < Duration::from_millis(3500) {
        a.write_all(&pattern(messages, 100)).unwrap();
        messages += 1;
        thread::sleep(Duration::from_millis(50));
    }
    // The commands of the files closed so far have run: none is left a zombie.
    let zombies = zombie_children(ud.pid());
    drop((a, b));
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    assert_eq!(zombies, 0, "zombie children of udstrace");
    let (packets, _) = done.summary();
    assert_eq!(packets, messages);

    let names: Vec<PathBuf> = files_in(&out_dir);
    assert!(names.len() >= 4, "{names:?}");
    assert_eq!(packets_in_their_seconds(&names, ino), messages);
    ran_once_on_each(&log, &names);
}

/// The files in `dir`, by name.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
}

/// Each file of a `-G 1` set is a whole capture named by its second (in UTC), in order, and
/// holds packets sent in that second (or, for the first, in the 200 ms before it); the
/// packets of socket `ino` in them all.
fn packets_in_their_seconds(paths: &[PathBuf], ino: u64) -> u64 {
    let mut total = 0;
    let mut last_second = None;
    for path in paths {
        let cap = whole_capture(path);
        let name = path.file_name().unwrap().to_str().unwrap();
        total += cap.packets.iter().filter(|p| p.src() == ino).count() as u64;
        let Some(first) = cap
            .packets
            .first()
            .map(|p| (p.ts_ns / 1_000_000_000) as i64)
        else {
            continue;
        };
        let named = (first..=first + 1)
            .find(|s| utc_name(*s) == name)
            .unwrap_or_else(|| panic!("{name} is not the second of its packets ({first})"));
        for p in &cap.packets {
            let ns = p.ts_ns as i64;
            assert!(ns >= named * 1_000_000_000 - 200_000_000, "{name}: {ns}");
            assert!(ns < (named + 1) * 1_000_000_000, "{name}: {ns}");
        }
        if let Some(last) = last_second {
            assert!(named > last, "{name}");
        }
        last_second = Some(named);
    }
    total
}

/// The `-z` script's log (`FILE SIZE` lines) says it ran once on each of `paths`, each then
/// complete (its size then is its size now). Waits up to 5 s for the last runs.
fn ran_once_on_each(log: &Path, paths: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        lines = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= paths.len() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let mut seen = std::collections::BTreeSet::new();
    for line in &lines {
        let (path, size) = line.rsplit_once(' ').unwrap();
        let path = PathBuf::from(path);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            size.parse::<u64>().unwrap(),
            len,
            "{} was not complete when -z ran",
            path.display()
        );
        assert!(seen.insert(path), "-z ran twice on {line}");
    }
    let expected: std::collections::BTreeSet<PathBuf> = paths.iter().cloned().collect();
    assert_eq!(seen, expected);
}

/// Children of `pid` that have exited and not been reaped.
fn zombie_children(pid: u32) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (state, parent) = (fields.next(), fields.next());
        if state == Some("Z") && parent == Some(&pid.to_string()) {
            n += 1;
        }
    }
    n
}

/// `-G 1 -W 2`: two files, then the capture ends by itself.
#[test]
fn time_rotation_stops_after_count_files() {
    let dir = TempDir::new("rotate-count");
    let name = dir.path("cap-%s.pcapng");
    let ud = Udstrace::start(&[
        "-p",
        &own_pid(),
        "-w",
        name.to_str().unwrap(),
        "-G",
        "1",
        "-W",
        "2",
    ]);
    let started = Instant::now();
    let done = ud.wait();
    let took = started.elapsed();
    assert!(done.success, "{:?}", done.stderr);
    assert!(took < Duration::from_secs(4), "{took:?}");
    let names = files(&dir);
    assert_eq!(names.len(), 2, "{names:?}");
    for n in &names {
        whole_capture(&dir.path(n));
    }
}

/// Rotation needs a file to rotate, and a `-z` program that exists: one line, exit 2, before
/// anything is attached.
#[test]
fn rotation_usage_errors() {
    let dir = TempDir::new("rotate-usage");
    let file = dir.path("cap.pcapng");
    let file = file.to_str().unwrap();
    for (args, line) in [
        (
            vec!["-w", "-", "-C", "1"],
            "udstrace: -C rotates files: it cannot rotate standard output (-w -)",
        ),
        (vec!["-G", "5"], "udstrace: -G needs -w FILE"),
        (vec!["-w", file, "-W", "3"], "udstrace: -W needs -C or -G"),
        (
            vec!["-w", file, "-z", "gzip"],
            "udstrace: -z needs -C or -G",
        ),
        (
            vec!["-w", file, "-C", "1", "-z", "/no/such/program"],
            "udstrace: -z /no/such/program: no such program (a path, or a name in $PATH)",
        ),
        (
            vec!["-w", file, "-C", "0"],
            "udstrace: invalid value '0' for '--file-size <SIZE>': invalid file size `0` (a whole \
             number of millions of bytes, or with k, m or g)",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.code, Some(2), "{args:?}: {:?}", out.stderr);
        assert_eq!(out.stderr, [line], "{args:?}");
    }
    assert!(files(&dir).is_empty());
}

/// Each file of the set is opened as `-w` opens one: a symbolic link planted at the second
/// file's name is refused with one line, the capture ends (exit 1), what the link points to is
/// left alone, and the first file is whole.
#[test]
fn a_link_at_a_later_name_is_refused() {
    let dir = TempDir::new("rotate-link");
    let target = dir.path("precious");
    std::fs::write(&target, b"keep").unwrap();
    let link = dir.path("cap.pcapng1");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let first = dir.path("cap.pcapng");
    let ud = Udstrace::start(&["-p", &own_pid(), "-w", first.to_str().unwrap(), "-C", "1"]);
    send(2_000_000, 3);
    let done = ud.stop();
    assert_eq!(done.code, Some(1), "{:?}", done.stderr);
    let refusal = format!(
        "udstrace: refusing to write {}: it is a symbolic link to {}; ",
        link.display(),
        target.display()
    );
    assert!(
        done.stderr.iter().any(|l| l.starts_with(&refusal)),
        "{:?}",
        done.stderr
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert!(whole_capture(&first).packets.len() > 50);
}
