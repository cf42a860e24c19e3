//! One run: the workload under one mode (with udstrace, strace or socat beside it), and its
//! figures.

// Rates, ratios and percentages: floating-point arithmetic on counters by design.
#![allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]

use std::{
    io::{BufRead, BufReader, Lines, Read},
    path::Path,
    process::{Child, ChildStderr, Command, Output, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use super::{Mode, Workload, CAPTURE, SECONDS};

/// The socket the named workloads' server listens on.
const SERVER: &str = "/tmp/udstrace-bench.sock";
/// The socket socat listens on, in front of `SERVER`.
const PROXY: &str = "/tmp/udstrace-bench-proxy.sock";

/// One run's figures.
#[derive(Clone, Default)]
pub(super) struct Run {
    pub(super) rate: f64,
    /// The workload's own CPU seconds per operation.
    pub(super) cpu_per_op: f64,
    bytes: u64,
    /// udstrace's: packets, lost segments, lost bytes, captured payload bytes, CPU seconds,
    /// peak RSS in KiB, seconds from start to attached.
    packets: u64,
    pub(super) lost: u64,
    captured: u64,
    pub(super) cpu: f64,
    pub(super) rss_kib: u64,
    pub(super) attach: f64,
    /// What udstrace's programs took per send by the kernel's count, when it was on
    /// ([`BpfStats`]).
    pub(super) program_ns: Option<f64>,
}

impl Run {
    /// The share of the bytes sent that the capture holds, in percent.
    pub(super) fn kept_percent(&self) -> f64 {
        if self.bytes == 0 {
            100.0
        } else {
            100.0 * self.captured as f64 / self.bytes as f64
        }
    }
}

/// Runs one workload under one mode.
pub(super) fn run_one(bin: &Path, w: &Workload, mode: Mode, rate: Option<u64>) -> Result<Run> {
    let mut load = workload_command(bin, w, mode, rate);
    let socat = if mode == Mode::Socat {
        Some(start_socat()?)
    } else {
        None
    };
    let tracer = if mode.traced() || mode.reference() {
        Some(Tracer::start(bin, mode)?)
    } else {
        None
    };
    let out = load.stdout(Stdio::piped()).output().context("workload")?;
    let mut run = workload_figures(w, &out)?;
    if let Some(tracer) = &tracer {
        run.attach = tracer.attach;
        run.program_ns = program_ns_per_run(tracer.child.id())?;
    }
    if let Some(mut s) = socat {
        let _ = s.kill();
        let _ = s.wait();
    }
    if let Some(tracer) = tracer {
        tracer.stop(w, mode, &mut run)?;
    }
    Ok(run)
}

/// The workload's command line: udstrace-load (under strace in that mode), talking through
/// socat's socket in that mode, paced at `rate` bytes per second if given.
fn workload_command(bin: &Path, w: &Workload, mode: Mode, rate: Option<u64>) -> Command {
    let mut load = Command::new(bin.join("udstrace-load"));
    if mode == Mode::Strace {
        load = Command::new("strace");
        load.args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-s",
            "1048576",
            "-xx",
            "-e",
            "trace=read,write,sendmsg,recvmsg,sendto,recvfrom",
        ])
        .arg(bin.join("udstrace-load"));
    }
    load.args([w.kind, w.size, SECONDS]);
    if w.named {
        load.arg(SERVER);
        if mode == Mode::Socat {
            load.arg(PROXY);
        } else {
            load.arg(SERVER);
        }
    } else if rate.is_some() {
        load.args(["", ""]);
    }
    if let Some(r) = rate {
        load.arg(r.to_string());
    }
    load
}

/// Starts a `socat -x` proxy from `PROXY` to `SERVER` and waits (up to 10 s) for its socket.
fn start_socat() -> Result<Child> {
    let _ = std::fs::remove_file(PROXY);
    let socat = Command::new("socat")
        .args([
            "-x",
            &format!("UNIX-LISTEN:{PROXY},fork"),
            &format!("UNIX-CONNECT:{SERVER}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .context("socat")?;
    let start = Instant::now();
    while !Path::new(PROXY).exists() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(socat)
}

/// The figures the workload printed (`ops= bytes= secs= cpu=`).
fn workload_figures(w: &Workload, out: &Output) -> Result<Run> {
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| -> f64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (ops, bytes, secs, cpu) = (
        field("ops="),
        field("bytes="),
        field("secs="),
        field("cpu="),
    );
    if secs == 0.0 {
        bail!(
            "workload {} printed nothing: {}",
            w.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Run {
        rate: if w.kind == "bulk" {
            bytes / secs
        } else {
            ops / secs
        },
        cpu_per_op: cpu / ops.max(1.0),
        bytes: bytes as u64,
        ..Run::default()
    })
}

/// udstrace capturing during a run.
struct Tracer {
    child: Child,
    /// Its stderr, after the `listening on` line.
    lines: Lines<BufReader<ChildStderr>>,
    /// Seconds from start to attached.
    attach: f64,
}

impl Tracer {
    /// Starts udstrace with the output of `mode` and waits until it has attached.
    fn start(bin: &Path, mode: Mode) -> Result<Self> {
        let mut cmd = Command::new(bin.join("udstrace"));
        match mode {
            Mode::File => cmd.args(["-w", CAPTURE]),
            Mode::Null => cmd.args(["-w", "/dev/null"]),
            Mode::Recv => cmd.args(["--recv", "-w", "/dev/null"]),
            Mode::Empty => cmd.args(["reference", "empty"]),
            Mode::Floor => cmd.args(["reference", "floor"]),
            // Filtered out in the kernel: only process 1 is captured.
            _ => cmd.args(["-w", "/dev/null", "-p", "1"]),
        };
        let start = Instant::now();
        let mut child = cmd.stderr(Stdio::piped()).spawn().context("udstrace")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("listening on") => break,
                Some(Ok(_)) => {}
                _ => bail!("udstrace did not start"),
            }
        }
        Ok(Self {
            child,
            lines,
            attach: start.elapsed().as_secs_f64(),
        })
    }

    /// Stops udstrace (SIGTERM) and adds its figures to `run`: CPU time, peak RSS, what its
    /// summary line counts, and the payload bytes the capture holds.
    fn stop(self, w: &Workload, mode: Mode, run: &mut Run) -> Result<()> {
        let Self { child, lines, .. } = self;
        // SAFETY: kill(2) on our own child.
        unsafe { kill(i32::try_from(child.id())?, 15) };
        let mut rest = String::new();
        for l in lines.map_while(Result::ok) {
            rest.push_str(&l);
            rest.push('\n');
        }
        let (status, usage) = wait4(child.id())?;
        if status != 0 {
            bail!("udstrace failed: {rest}");
        }
        run.cpu = usage.0;
        run.rss_kib = usage.1;
        let (packets, lost, lost_bytes) = summary_counts(&rest);
        run.packets = packets;
        run.lost = lost;
        run.captured = captured(w, mode, run.bytes, lost_bytes)?;
        Ok(())
    }
}

/// Packets, lost segments and lost bytes from udstrace's `packets captured` summary line
/// (lost bytes 0 if it names none).
fn summary_counts(stderr: &str) -> (u64, u64, u64) {
    let summary = stderr
        .lines()
        .find(|l| l.contains("packets captured"))
        .unwrap_or("");
    let num = |i: usize| -> u64 {
        summary
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let lost_bytes = if summary.contains("bytes)") {
        num(2)
    } else {
        0
    };
    (num(0), num(1), lost_bytes)
}

/// The payload bytes the capture holds of the `bytes` the workload sent: counted in the file,
/// or the bytes sent less those udstrace reported lost.
fn captured(w: &Workload, mode: Mode, bytes: u64, lost_bytes: u64) -> Result<u64> {
    let mut captured = if mode == Mode::File {
        let captured = captured_payload(Path::new(CAPTURE))?;
        // Remove the file now: the kernel drops a deleted file's dirty pages instead of
        // writing them back during the next runs (which skewed them by 10-20%).
        let _ = std::fs::remove_file(CAPTURE);
        captured
    } else if mode == Mode::Recv {
        // Every byte is captured twice, sent and received.
        (2 * bytes).saturating_sub(lost_bytes) / 2
    } else {
        bytes.saturating_sub(lost_bytes)
    };
    if w.kind != "bulk" {
        // Both directions are sent: the workload counts them in `bytes`.
        captured = captured.min(bytes);
    }
    Ok(captured)
}

/// Payload bytes captured in a pcapng file (enhanced packet blocks, minus synthesised
/// headers).
fn captured_payload(path: &Path) -> Result<u64> {
    let mut f = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut total = 0u64;
    let mut header = [0u8; 8];
    let mut body = Vec::new();
    while f.read_exact(&mut header).is_ok() {
        let kind = u32::from_le_bytes(header[..4].try_into()?);
        let len = u32::from_le_bytes(header[4..].try_into()?) as usize;
        body.resize(len - 8, 0);
        f.read_exact(&mut body)?;
        if kind == 6 {
            let caplen = u64::from(u32::from_le_bytes(body[12..16].try_into()?));
            let headers = if body[20 + 6] == 6 { 60 } else { 48 };
            total += caplen.saturating_sub(headers);
        }
    }
    Ok(total)
}

/// Bytes written to measure the capture file system's write rate: as much as a two-second
/// capture of a 64 KiB bulk transfer writes.
pub(super) const DISK_TEST_BYTES: u64 = 4_000_000_000;

/// The rate at which the capture file's file system takes a sequential write in 1 MiB pieces
/// (buffered, like udstrace's writes), in bytes per second.
pub(super) fn disk_write_rate() -> Result<f64> {
    use std::io::Write as _;
    let path = Path::new(CAPTURE).with_extension("disk-test");
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut f = std::fs::File::create(&path).context("disk write test")?;
    let mut written = 0u64;
    while written < DISK_TEST_BYTES {
        f.write_all(&chunk).context("disk write test")?;
        written += chunk.len() as u64;
    }
    drop(f);
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    // Let writeback of what the deletion did not drop settle before the next runs.
    std::thread::sleep(std::time::Duration::from_secs(2));
    Ok(written as f64 / secs)
}

/// How long the idle capture is watched.
const IDLE_SECONDS: u64 = 10;

/// What an idle capture costs the machine: udstrace capturing only process 1 (which sends
/// nothing on Unix sockets, and no other process's send reaches the ring buffer), its
/// wakeups per second over `IDLE_SECONDS` (the voluntary context switches of all its threads:
/// each is a sleep, so a wakeup), and its start-to-attached time.
pub(super) fn idle_wakeups(bin: &Path) -> Result<(f64, f64)> {
    let tracer = Tracer::start(bin, Mode::Filtered)?;
    let pid = tracer.child.id();
    // Past the start-up's own work (the output thread, the first drains).
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = voluntary_switches(pid)?;
    std::thread::sleep(std::time::Duration::from_secs(IDLE_SECONDS));
    let after = voluntary_switches(pid)?;
    let attach = tracer.attach;
    let mut run = Run::default();
    let idle = Workload {
        name: "idle",
        kind: "idle",
        size: "0",
        named: false,
        recv: false,
        floor: false,
    };
    tracer.stop(&idle, Mode::Filtered, &mut run)?;
    Ok(((after - before) as f64 / IDLE_SECONDS as f64, attach))
}

/// The kernel's own account of `pid`'s BPF programs (`kernel.bpf_stats_enabled`): the time
/// all of them ran, over the runs of the one that ran most (the program on the send hook),
/// in ns per run. `None` when none ran, or the count is off.
fn program_ns_per_run(pid: u32) -> Result<Option<f64>> {
    let (mut time, mut most) = (0u64, 0u64);
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).context("udstrace's fdinfo")? {
        let info = std::fs::read_to_string(fd?.path()).unwrap_or_default();
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(t), Some(n)) = (field("run_time_ns:"), field("run_cnt:")) {
            time += t;
            most = most.max(n);
        }
    }
    Ok((most > 0).then(|| time as f64 / most as f64))
}

/// `kernel.bpf_stats_enabled` on while it lives, set back as it was when dropped: the count
/// adds two clock reads to every run, so it is on only for the pass that reads it.
pub(super) struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(super) fn enable() -> Result<Self> {
        let was = std::fs::read_to_string(BPF_STATS).context(BPF_STATS)?;
        std::fs::write(BPF_STATS, "1").context(BPF_STATS)?;
        Ok(Self(was))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, self.0.trim());
    }
}

/// The voluntary context switches of every thread of `pid` so far.
fn voluntary_switches(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).context("udstrace's threads")? {
        let status = std::fs::read_to_string(task?.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// Waits for `pid`; returns its exit status and (CPU seconds, peak RSS KiB).
fn wait4(pid: u32) -> Result<(i32, (f64, u64))> {
    let mut status = 0i32;
    let mut usage = [0i64; 18];
    // SAFETY: usage is larger than struct rusage (144 bytes on x86_64).
    let rc = unsafe {
        sys_wait4(
            i32::try_from(pid)?,
            &raw mut status,
            0,
            usage.as_mut_ptr().cast(),
        )
    };
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    // struct rusage: ru_utime (2 x i64), ru_stime (2 x i64), ru_maxrss (KiB), ...
    let cpu = (usage[0] + usage[2]) as f64 + (usage[1] + usage[3]) as f64 / 1e6;
    Ok((status, (cpu, u64::try_from(usage[4]).unwrap_or(0))))
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    #[link_name = "wait4"]
    fn sys_wait4(pid: i32, status: *mut i32, options: i32, usage: *mut std::ffi::c_void) -> i32;
}
