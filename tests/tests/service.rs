//! The systemd unit shipped in `dist/udstrace.service`: `systemd-analyze verify` accepts it,
//! and its `ExecStart` (read from the file) runs with the unit's capability bounding set and
//! no_new_privs as `setpriv` applies them (systemd is not PID 1 on every test machine), with a
//! `NOTIFY_SOCKET` this test binds: `READY=1` arrives once the capture is attached (bytes sent
//! right after it are in the file), `STOPPING=1` at SIGTERM, and the ring's first file is a
//! whole capture, mode 0600.

use std::{
    io::Write,
    os::{
        linux::net::SocketAddrExt,
        unix::{
            fs::MetadataExt,
            net::{SocketAddr, UnixDatagram, UnixStream},
        },
    },
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use udstrace_tests::{
    inode, own_pid, pattern, read_capture, tcp_stream, udstrace_bin, TempDir, Udstrace,
};

fn unit_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/udstrace.service")
}

/// The value of `key=` in the unit (the one line that sets it).
fn setting(unit: &str, key: &str) -> String {
    let values: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect();
    assert_eq!(values.len(), 1, "{key} set once: {values:?}");
    values[0].to_string()
}

/// Capability names of the unit (`CAP_BPF`) as setpriv's list (`+bpf`).
fn setpriv_caps(bounding: &str) -> String {
    bounding
        .split_whitespace()
        .map(|c| format!("+{}", c.strip_prefix("CAP_").unwrap().to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The capability numbers of `names` (`CAP_BPF` ...), as a CapBnd mask.
fn mask(names: &str) -> u64 {
    names
        .split_whitespace()
        .map(|n| match n {
            "CAP_DAC_READ_SEARCH" => 1u64 << 2,
            "CAP_SYS_PTRACE" => 1 << 19,
            "CAP_SYS_ADMIN" => 1 << 21,
            "CAP_PERFMON" => 1 << 38,
            "CAP_BPF" => 1 << 39,
            other => panic!("{other}: add its number"),
        })
        .fold(0, |a, b| a | b)
}

#[test]
fn unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: skipped");
        return;
    }
    let dir = TempDir::new("service-verify");
    let unit = std::fs::read_to_string(unit_file()).unwrap();
    // The binary where this test's is (the unit names the installed path).
    let copy = dir.path("udstrace.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/sbin/udstrace", udstrace_bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exec_start_reports_ready_once_attached() {
    let dir = TempDir::new("service-run");
    let unit = std::fs::read_to_string(unit_file()).unwrap();
    assert_eq!(setting(&unit, "Type"), "notify");
    assert_eq!(setting(&unit, "NoNewPrivileges"), "yes");
    let bounding = setting(&unit, "CapabilityBoundingSet");
    let exec = setting(&unit, "ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/sbin/udstrace"));
    let state = setting(&unit, "ReadWritePaths");
    assert_eq!(state, "/var/lib/udstrace");
    let args: Vec<String> = words
        .map(|w| w.replace(&state, dir.0.to_str().unwrap()))
        .collect();
    assert!(
        args.iter().any(|a| a.starts_with(dir.0.to_str().unwrap())),
        "{args:?}"
    );

    let name = format!("udstrace-test-notify-{}", std::process::id());
    let notify = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_mins(3)))
        .unwrap();

    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--bounding-set=-all,{}", setpriv_caps(&bounding)))
        .args(["--no-new-privs", "--"])
        .arg(udstrace_bin())
        .args(&args)
        // Only this test's traffic: other captures run on this machine.
        .args(["-p", &own_pid()])
        .env("NOTIFY_SOCKET", format!("@{name}"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(Udstrace::start_command(cmd)).unwrap());

    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within 3 minutes");
    assert_eq!(&buf[..n], b"READY=1");
    // At once: a capture that said it was ready before attaching would miss these.
    let (mut a, b) = UnixStream::pair().unwrap();
    let sent = pattern(77, 5000);
    a.write_all(&sent).unwrap();
    drop(b);
    let ino = inode(&a);

    let ud = rx.recv_timeout(Duration::from_mins(3)).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", ud.pid())).unwrap();
    let cap_bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(cap_bnd, mask(&bounding), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"));
    let out = ud.stop();
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(out.success, "{:?}", out.stderr);
    // Lines that read well in a journal: each says who speaks, or is the closing summary.
    for line in &out.stderr {
        assert!(
            line.starts_with("udstrace: ")
                || line.starts_with("listening on ")
                || line.ends_with(" lost"),
            "{line}"
        );
    }

    let first = dir.path("udstrace.pcapng00");
    let meta = std::fs::metadata(&first).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    let cap = read_capture(&first);
    assert!(cap.ends_with_stats);
    assert_eq!(tcp_stream(&cap.packets, ino).0, sent);
}
