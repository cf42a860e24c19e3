//! Privileges: `-Z USER` (attached as root, then running as USER with no capability left,
//! writing its files as USER) and the least a capture needs (CAP_BPF and CAP_PERFMON for a
//! process of another user, as `setpriv` starts it; a clear refusal without them).
//!
//! Ground truth comes from outside udstrace: `/proc/PID/status` of the running capture, the
//! owner and mode of the file in the file system, and the bytes this process sent.

use std::{
    io::Write,
    os::unix::{fs::MetadataExt, net::UnixStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use udstrace_tests::{
    inode, own_pid, read_capture, tcp_stream, udstrace_bin, Finished, TempDir, Udstrace,
};

/// `nobody`'s uid and gid on Debian.
const NOBODY: u32 = 65_534;

/// The tests capture this process's own traffic (`-p` of the test binary): one at a time, or
/// each would see the others' messages.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A directory of `nobody`'s own, which nobody else may enter.
fn nobodys_dir(dir: &TempDir) -> PathBuf {
    let own = dir.path("nobody");
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&own, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    own
}

/// Fields of `/proc/PID/status` (the line's words after the key).
fn status(pid: u32, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Sends `messages` known messages on a socket pair of this process; the sender's inode and
/// the bytes sent.
fn known_traffic(messages: u64) -> (u64, Vec<u8>) {
    let (mut a, b) = UnixStream::pair().unwrap();
    let mut sent = Vec::new();
    for i in 0..messages {
        let bytes = udstrace_tests::pattern(100 + i, 300);
        a.write_all(&bytes).unwrap();
        sent.extend(bytes);
    }
    drop(b);
    (inode(&a), sent)
}

/// `setpriv` running udstrace as `nobody` with `caps` (a setpriv list such as
/// `+bpf,+perfmon`, or empty: none) inherited and ambient, so that they survive the exec.
fn as_nobody_with(caps: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if !caps.is_empty() {
        cmd.arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"));
    }
    cmd.arg("--").arg(udstrace_bin()).args(args);
    cmd
}

/// `-Z nobody`: the capture attaches as root, then runs as nobody (uid, gid, groups) with no
/// capability in any set and no_new_privs, and still captures; its file is nobody's, 0600,
/// in a directory only nobody may write to.
#[test]
fn relinquished_to_nobody_while_capturing() {
    let _serial = serial();
    let dir = TempDir::new("privileges-z");
    let file = nobodys_dir(&dir).join("capture.pcapng");
    let ud = Udstrace::start(&[
        "-Z",
        "nobody",
        "-p",
        &own_pid(),
        "-w",
        file.to_str().unwrap(),
    ]);
    let pid = ud.pid();
    assert_eq!(status(pid, "Uid:"), ["65534"; 4]);
    assert_eq!(status(pid, "Gid:"), ["65534"; 4]);
    assert_eq!(status(pid, "Groups:"), ["65534"]);
    for key in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:", "CapBnd:"] {
        assert_eq!(status(pid, key), ["0000000000000000"], "{key}");
    }
    assert_eq!(status(pid, "NoNewPrivs:"), ["1"]);
    // Every thread, not only the first.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let text = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        for line in [
            "CapEff:\t0000000000000000",
            "CapPrm:\t0000000000000000",
            "CapBnd:\t0000000000000000",
            "NoNewPrivs:\t1",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert!(text.contains("Uid:\t65534\t65534\t65534\t65534"), "{text}");
    }
    let (ino, sent) = known_traffic(3);
    let out = ud.stop();
    assert!(out.success, "{:?}", out.stderr);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    assert_eq!(meta.mode() & 0o7777, 0o600);
    let cap = read_capture(&file);
    assert!(cap.ends_with_stats);
    assert_eq!(tcp_stream(&cap.packets, ino).0, sent);
}

/// `-Z` with rotation: every file of a `-C` ring is written as nobody, and `-z` runs as nobody
/// on each (gzip's files are nobody's too). The ring is wide enough not to wrap: a wrapped
/// slot's second file would meet the first one's `.gz`, which gzip (as under tcpdump) refuses
/// to replace. The gunzipped files hold, in order, every byte sent.
#[test]
fn relinquished_rotation_writes_as_the_user() {
    let _serial = serial();
    let dir = TempDir::new("privileges-z-rotate");
    let own = nobodys_dir(&dir);
    let file = own.join("ring.pcapng");
    let ud = Udstrace::start(&[
        "-Z",
        "nobody",
        "-p",
        &own_pid(),
        "-w",
        file.to_str().unwrap(),
        "-C",
        "1k",
        "-W",
        "100",
        "-z",
        "gzip",
    ]);
    let (ino, sent) = known_traffic(12);
    let out = ud.stop();
    assert!(out.success, "{:?}", out.stderr);
    // -z is not waited for: give gzip a moment to finish the last file.
    let mut files = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(&own)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "gz"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    files.sort();
    // 12 messages of 300 bytes with their comments cannot fit in two files of 1 kB.
    assert!((3..100).contains(&files.len()), "{files:?}");
    let mut packets = Vec::new();
    for f in &files {
        assert!(
            f.extension().is_some_and(|e| e == "gz"),
            "{f:?} not gzipped: {files:?}"
        );
        let meta = std::fs::metadata(f).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (NOBODY, 0o600), "{f:?}");
        let plain = dir.path(&f.file_stem().unwrap().to_string_lossy());
        let unzipped = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(f)
            .output()
            .unwrap();
        assert!(unzipped.status.success(), "{f:?}");
        std::fs::write(&plain, unzipped.stdout).unwrap();
        let cap = read_capture(&plain);
        assert!(cap.ends_with_stats, "{f:?}");
        packets.extend(cap.packets);
    }
    assert_eq!(tcp_stream(&packets, ino).0, sent);
}

/// A user the system does not know: one line, before anything is attached.
#[test]
fn unknown_user_is_one_line() {
    let out = udstrace_tests::run(&["-Z", "no-such-user-here", "-w", "/tmp/never"]);
    assert_eq!(out.code, Some(2));
    assert_eq!(
        out.stderr,
        ["udstrace: -Z: no such user: no-such-user-here"]
    );
    assert!(!Path::new("/tmp/never").exists());
}

/// The least a capture needs: CAP_BPF and CAP_PERFMON, for a process of another user (nobody,
/// as setpriv starts it); the bytes this process sends are captured whole. With neither, or
/// one, a clear refusal.
#[test]
fn capture_with_bpf_and_perfmon_only() {
    let _serial = serial();
    let dir = TempDir::new("privileges-caps");
    let file = nobodys_dir(&dir).join("capture.pcapng");
    let ud = Udstrace::start_command(as_nobody_with(
        "+bpf,+perfmon",
        &["-p", &own_pid(), "-w", file.to_str().unwrap()],
    ));
    assert_eq!(status(ud.pid(), "Uid:"), ["65534"; 4]);
    let (ino, sent) = known_traffic(4);
    let out = ud.stop();
    assert!(out.success, "{:?}", out.stderr);
    let cap = read_capture(&file);
    assert_eq!(tcp_stream(&cap.packets, ino).0, sent);

    for caps in ["", "+bpf", "+perfmon"] {
        let out = as_nobody_with(caps, &["-p", &own_pid(), "-c", "1"])
            .output()
            .unwrap();
        let out = Finished {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_string)
                .collect(),
        };
        assert_eq!(out.code, Some(1), "{caps}: {out:?}");
        assert_eq!(
            out.stderr,
            [
                "udstrace: permission denied: udstrace must run as root, or with CAP_BPF and \
              CAP_PERFMON"
            ],
            "{caps}"
        );
    }
}
