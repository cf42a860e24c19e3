//! A soak of udstrace: a capture of everything while short Unix connections come as fast as
//! the machine makes them, udstrace's memory and descriptors sampled every second, and after
//! it exits, its kernel objects looked for.
//!
//! ```text
//! udstrace-soak SECONDS [UDSTRACE]
//! ```
//! Prints one line per second (`t=S rss_kb=N hwm_kb=N fds=N connections=N`), then the
//! verdicts; exits 1 when one fails: resident memory over 64 MB, growing (the last third's
//! highest sample more than 10% above the first third's), descriptors growing, fewer than
//! 1,000 connections a second (no load, no test), or a BPF
//! program, link or map udstrace held (by id, from its /proc fdinfo) still there after it
//! exited.

// A rate is floating point by design.
#![allow(clippy::cast_precision_loss)]

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

/// The ceiling of udstrace's resident memory.
const MAX_RSS_KB: u64 = 64 * 1024;
/// How much the last third's peak may exceed the first third's, in percent.
const GROWTH_PERCENT: u64 = 10;
/// Connecting threads.
const CLIENTS: usize = 2;

fn usage() -> ! {
    eprintln!("usage: udstrace-soak SECONDS [UDSTRACE]");
    std::process::exit(2)
}

/// A `Key:   N kB` line of /proc/PID/status.
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The ids of the BPF programs, maps and links process `pid` holds descriptors of, from the
/// `prog_id:`, `map_id:` and `link_id:` lines of its fdinfo.
fn bpf_ids(pid: u32) -> BTreeSet<(&'static str, u64)> {
    let mut ids = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for entry in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let link = info.lines().any(|l| l.starts_with("link_id:"));
        for line in info.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let kind = match key {
                "link_id" => "link",
                // A link's fdinfo names its program too: the program is counted by its own
                // descriptor (or, held only by the link, goes with it).
                "prog_id" if !link => "prog",
                "map_id" => "map",
                _ => continue,
            };
            if let Ok(id) = value.trim().parse() {
                ids.insert((kind, id));
            }
        }
    }
    ids
}

/// The ids `bpftool KIND show` lists now.
fn listed(kind: &str) -> BTreeSet<u64> {
    let out = Command::new("bpftool")
        .args([kind, "show"])
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "bpftool {kind} show failed");
    // Each object's first line: `ID: type ...`.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(id, _)| id.parse().ok())
        .collect()
}

/// Those of `ours` that `bpftool` still lists.
fn still_loaded(ours: &BTreeSet<(&'static str, u64)>) -> Vec<(&'static str, u64)> {
    let mut left = Vec::new();
    for kind in ["prog", "link", "map"] {
        let now = listed(kind);
        left.extend(ours.iter().filter(|(k, id)| *k == kind && now.contains(id)));
    }
    left
}

/// Short connections to a server on `path` until `stop`: each connects, sends 64 bytes,
/// reads them back and closes.
fn load(
    path: &Path,
    stop: &Arc<AtomicBool>,
    count: &Arc<AtomicU64>,
) -> Vec<thread::JoinHandle<()>> {
    let listener = UnixListener::bind(path).expect("bind");
    let mut threads = Vec::new();
    let server_stop = Arc::clone(stop);
    threads.push(thread::spawn(move || {
        let mut b = [0u8; 64];
        for conn in listener.incoming() {
            if server_stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut conn) = conn else { continue };
            if conn.read_exact(&mut b).is_ok() {
                let _ = conn.write_all(&b);
            }
        }
    }));
    for _ in 0..CLIENTS {
        let (path, stop, count) = (path.to_path_buf(), Arc::clone(stop), Arc::clone(count));
        threads.push(thread::spawn(move || {
            let buf = [0x5au8; 64];
            let mut back = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut c) = UnixStream::connect(&path) else {
                    continue;
                };
                if c.write_all(&buf).is_ok() && c.read_exact(&mut back).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    threads
}

#[allow(clippy::too_many_lines, reason = "one run, its verdicts in order")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage());
    let bin = args
        .get(2)
        .map_or_else(udstrace_tests::udstrace_bin, PathBuf::from);
    let dir = udstrace_tests::TempDir::new("soak");
    let socket = dir.path("soak.sock");

    let mut udstrace = udstrace_tests::Udstrace::start_command({
        let mut cmd = Command::new(&bin);
        cmd.args(["-w", "/dev/null"]).stdout(Stdio::null());
        cmd
    });
    let pid = udstrace.pid();
    let ours = bpf_ids(pid);
    let fds_at_start = fd_count(pid).unwrap_or(0);

    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads = load(&socket, &stop, &count);
    let start = Instant::now();
    let mut samples: Vec<(u64, u64, usize)> = Vec::new();
    for t in 1..=seconds {
        let due = Duration::from_secs(t);
        thread::sleep(due.saturating_sub(start.elapsed()));
        let rss = status_kb(pid, "VmRSS").unwrap_or(0);
        let hwm = status_kb(pid, "VmHWM").unwrap_or(0);
        let fds = fd_count(pid).unwrap_or(0);
        let connections = count.load(Ordering::Relaxed);
        println!("t={t} rss_kb={rss} hwm_kb={hwm} fds={fds} connections={connections}");
        samples.push((rss, hwm, fds));
    }
    stop.store(true, Ordering::Relaxed);
    // Wake the accept loop.
    drop(UnixStream::connect(&socket));
    for t in threads {
        let _ = t.join();
    }
    let connections = count.load(Ordering::Relaxed);
    let running = udstrace.running();
    let finished = udstrace.stop();
    let summary = finished
        .stderr
        .iter()
        .find(|l| l.contains("packets captured"))
        .cloned()
        .unwrap_or_default();
    let gone = !Path::new(&format!("/proc/{pid}")).exists();

    let mut failures = Vec::new();
    let third = (samples.len() / 3).max(1);
    let peak = samples.iter().map(|s| s.0).max().unwrap_or(0);
    let hwm = samples.iter().map(|s| s.1).max().unwrap_or(0);
    // The most of a sample's field over its first and its last third.
    let thirds = |field: fn(&(u64, u64, usize)) -> u64| {
        let top = |part: &mut dyn Iterator<Item = &(u64, u64, usize)>| {
            part.take(third).map(field).max().unwrap_or(0)
        };
        (top(&mut samples.iter()), top(&mut samples.iter().rev()))
    };
    let (first, last) = thirds(|s| s.0);
    let (fds_first, fds_last) = thirds(|s| s.2 as u64);
    println!(
        "connections={connections} rate={:.0}/s seconds={seconds}",
        connections as f64 / start.elapsed().as_secs_f64()
    );
    println!("udstrace: {summary}");
    println!(
        "rss: peak {peak} kB (high-water mark {hwm} kB), first third's peak {first} kB, \
         last third's {last} kB"
    );
    println!(
        "fds: {fds_at_start} at start, {fds_first} in the first third, {fds_last} in the last"
    );
    // A load that did not come proves nothing.
    if connections < seconds * 1000 {
        failures.push(format!("only {connections} connections in {seconds} s"));
    }
    if !running {
        failures.push("udstrace exited during the soak".to_string());
    }
    if hwm > MAX_RSS_KB {
        failures.push(format!("high-water mark {hwm} kB is over {MAX_RSS_KB} kB"));
    }
    if last * 100 > first * (100 + GROWTH_PERCENT) {
        failures.push(format!(
            "memory grew: last third's peak {last} kB over first third's {first} kB + {GROWTH_PERCENT}%"
        ));
    }
    // A few descriptors come and go (a /proc scan, sock_diag); a leak grows without end.
    if fds_last > fds_first + 8 {
        failures.push(format!("descriptors grew from {fds_first} to {fds_last}"));
    }
    if !gone {
        failures.push(format!("udstrace (pid {pid}) is still there after exiting"));
    }
    if ours.is_empty() {
        failures.push("udstrace held no BPF object to look for".to_string());
    }
    // The kernel frees a program after its last reference goes, in deferred work: what
    // udstrace held may show for a moment after it exits. Gone within 10 s, or left behind.
    let exited = Instant::now();
    let mut left = still_loaded(&ours);
    while !left.is_empty() && exited.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(100));
        left = still_loaded(&ours);
    }
    for kind in ["prog", "link", "map"] {
        let held: Vec<u64> = ours
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| *id)
            .collect();
        let still = left.iter().filter(|(k, _)| *k == kind).count();
        println!(
            "bpf {kind}s held: {} (ids {held:?}), listed by bpftool after exit: {still}",
            held.len(),
        );
    }
    println!(
        "looked for until {:.1} s after exit",
        exited.elapsed().as_secs_f64()
    );
    let left: Vec<String> = left.iter().map(|(k, id)| format!("{k} {id}")).collect();
    if !left.is_empty() {
        failures.push(format!("still loaded after exit: {}", left.join(", ")));
    }
    if failures.is_empty() {
        println!("soak passed");
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}
