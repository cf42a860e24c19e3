//! `cargo xtask bench`: what udstrace costs the programs it traces, and what it keeps.
//!
//! Every workload (tests/src/bin/udstrace-load.rs) runs for a fixed time under each mode in
//! turn, several rounds, alternating, so that the machine's drift hits every mode alike;
//! figures are medians, ratios are against the untraced runs of the same round. Writes
//! docs/BENCHMARKS.md.

// Rates, ratios and percentages: floating-point arithmetic on counters by design; the report
// builder is one long, flat sequence.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, require_root, root, sh};

const ROUNDS: usize = 3;
const SECONDS: &str = "2";
const CAPTURE: &str = "/tmp/udstrace-bench.pcapng";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Untraced,
    File,
    Null,
    Filtered,
    /// `--recv`: receives captured too, to /dev/null.
    Recv,
    Strace,
    Socat,
}

impl Mode {
    /// Whether udstrace runs in this mode.
    fn traced(self) -> bool {
        matches!(self, Self::File | Self::Null | Self::Filtered | Self::Recv)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::File => "udstrace -w file",
            Self::Null => "udstrace -w /dev/null",
            Self::Filtered => "udstrace, workload filtered out",
            Self::Recv => "udstrace --recv -w /dev/null",
            Self::Strace => "strace, full payload",
            Self::Socat => "socat -x proxy",
        }
    }
}

struct Workload {
    name: &'static str,
    kind: &'static str,
    size: &'static str,
    named: bool,
    /// Also measured with `--recv`.
    recv: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "64 B ping-pong, socketpair",
        kind: "pingpong",
        size: "64",
        named: false,
        recv: true,
    },
    Workload {
        name: "64 B ping-pong, named socket",
        kind: "pingpong",
        size: "64",
        named: true,
        recv: false,
    },
    Workload {
        name: "4 KiB bulk, socketpair",
        kind: "bulk",
        size: "4096",
        named: false,
        recv: false,
    },
    Workload {
        name: "64 KiB bulk, socketpair",
        kind: "bulk",
        size: "65536",
        named: false,
        recv: true,
    },
    Workload {
        name: "64 KiB bulk, named socket",
        kind: "bulk",
        size: "65536",
        named: true,
        recv: false,
    },
    Workload {
        name: "64 B write+read, one thread",
        kind: "loop",
        size: "64",
        named: false,
        recv: false,
    },
    Workload {
        name: "4 KiB write+read, one thread",
        kind: "loop",
        size: "4096",
        named: false,
        recv: false,
    },
    Workload {
        name: "short connections, 64 B each way",
        kind: "connect",
        size: "64",
        named: true,
        recv: false,
    },
];

/// One run's figures.
#[derive(Clone, Default)]
struct Run {
    rate: f64,
    /// The workload's own CPU seconds per operation.
    cpu_per_op: f64,
    bytes: u64,
    /// udstrace's: packets, lost segments, lost bytes, captured payload bytes, CPU seconds,
    /// peak RSS in KiB, seconds from start to attached.
    packets: u64,
    lost: u64,
    captured: u64,
    cpu: f64,
    rss_kib: u64,
    attach: f64,
}

impl Run {
    /// The share of the bytes sent that the capture holds, in percent.
    fn kept_percent(&self) -> f64 {
        if self.bytes == 0 {
            100.0
        } else {
            100.0 * self.captured as f64 / self.bytes as f64
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run() -> Result<()> {
    require_root("cargo xtask bench")?;
    sh(cargo().args([
        "build",
        "--release",
        "-p",
        "udstrace",
        "-p",
        "udstrace-tests",
        "--bins",
    ]))?;
    let bin = root().join("target/release");
    let mut report = String::new();
    let mut rows = Vec::new();
    let mut measured = Vec::new();
    for w in WORKLOADS {
        let mut modes = vec![
            Mode::Untraced,
            Mode::File,
            Mode::Null,
            Mode::Filtered,
            Mode::Strace,
        ];
        if w.recv {
            modes.insert(4, Mode::Recv);
        }
        if w.named {
            modes.push(Mode::Socat);
        }
        if w.kind == "loop" {
            // What a send costs, measured without scheduling noise.
            modes = vec![Mode::Untraced, Mode::Null, Mode::Filtered];
        }
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); modes.len()];
        for _ in 0..ROUNDS {
            for (i, &m) in modes.iter().enumerate() {
                let r = run_one(&bin, w, m, None)?;
                eprintln!("{:<38} {:<32} {:>14.0}/s", w.name, m.name(), r.rate);
                runs[i].push(r);
            }
        }
        let base: Vec<f64> = runs[0].iter().map(|r| r.rate).collect();
        for (i, &m) in modes.iter().enumerate() {
            let ratio = median(runs[i].iter().zip(&base).map(|(r, b)| r.rate / b).collect());
            let rate = median(runs[i].iter().map(|r| r.rate).collect());
            let base_cpu: Vec<f64> = runs[0].iter().map(|r| r.cpu_per_op).collect();
            let cpu_ratio = median(
                runs[i]
                    .iter()
                    .zip(&base_cpu)
                    .map(|(r, b)| b / r.cpu_per_op)
                    .collect(),
            );
            // A loop reports its fastest slice only; the capture holds every slice.
            let kept_pct = (matches!(m, Mode::File | Mode::Null | Mode::Recv) && w.kind != "loop")
                .then(|| median(runs[i].iter().map(Run::kept_percent).collect()));
            let kept = kept_pct.map_or_else(String::new, |k| format!("{k:.1}%"));
            let traced = m.traced();
            let lost = if traced {
                format!(
                    "{}",
                    median(runs[i].iter().map(|r| r.lost as f64).collect()) as u64
                )
            } else {
                String::new()
            };
            if traced {
                measured.push(Measured {
                    workload: w.name,
                    mode: m,
                    ratio,
                    untraced_rate: median(base.clone()),
                    kept: kept_pct,
                    rss_mib: median(runs[i].iter().map(|r| r.rss_kib as f64).collect()) / 1024.0,
                    attach: median(runs[i].iter().map(|r| r.attach).collect()),
                });
            }
            let own = if traced {
                format!(
                    "{:.2} s, {} MiB, {:.2} s",
                    median(runs[i].iter().map(|r| r.cpu).collect()),
                    median(runs[i].iter().map(|r| r.rss_kib as f64).collect()) as u64 / 1024,
                    median(runs[i].iter().map(|r| r.attach).collect())
                )
            } else {
                String::new()
            };
            rows.push(format!(
                "| {} | {} | {} | {:.3} | {:.3} | {} | {} | {} |",
                w.name,
                m.name(),
                unit(w, rate),
                ratio,
                cpu_ratio,
                kept,
                lost,
                own
            ));
        }
    }
    // The largest bulk rate captured without loss, to a file.
    let mut lossless = Vec::new();
    for mode in [Mode::File, Mode::Null] {
        for rate_mb in [250u64, 500, 1000, 1500, 2000] {
            let w = WORKLOADS
                .iter()
                .find(|w| w.name == "64 KiB bulk, socketpair")
                .context("no bulk workload")?;
            let r = run_one(&bin, w, mode, Some(rate_mb * 1_000_000))?;
            eprintln!(
                "lossless search: {}, offered {rate_mb} MB/s, achieved {:.0} MB/s, lost {}",
                mode.name(),
                r.rate / 1e6,
                r.lost
            );
            lossless.push((mode.name(), rate_mb, r.rate / 1e6, r.lost, r.kept_percent()));
        }
    }

    let disk = disk_write_rate()?;
    eprintln!("file system write rate: {:.0} MB/s", disk / 1e6);

    let _ = writeln!(
        report,
        "Written by `cargo xtask bench` (tests/src/bin/udstrace-load.rs workloads, {ROUNDS} rounds of \
         {SECONDS} s per mode, modes alternating; medians; ratios against the untraced run of the same \
         round). Machine: {}. A noisy shared 2-core machine: compare ratios, not absolute rates.\n",
        machine()
    );
    let _ = writeln!(report, "| workload | mode | rate | rate vs untraced | workload CPU per op, untraced / traced | bytes kept | lost | udstrace CPU, peak RSS, start-to-attached |");
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let _ = writeln!(report, "{r}");
    }
    let _ = writeln!(
        report,
        "\nLossless capture rate (64 KiB writes over a socketpair, paced):\n"
    );
    let _ = writeln!(
        report,
        "| output | offered | achieved | lost segments | bytes kept |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    for (output, offered, achieved, lost, kept) in &lossless {
        let _ = writeln!(
            report,
            "| {output} | {offered} MB/s | {achieved:.0} MB/s | {lost} | {kept:.1}% |"
        );
    }
    let _ = writeln!(
        report,
        "\nThe file system the capture files go to takes {:.0} MB/s ({} GB written in 1 MiB \
         writes, as udstrace writes, then deleted).\n",
        disk / 1e6,
        DISK_TEST_BYTES / 1_000_000_000
    );
    let lossless_rate = |output: &str| {
        lossless
            .iter()
            .filter(|l| l.0 == output && l.3 == 0)
            .map(|l| l.1)
            .max()
            .unwrap_or(0)
    };
    report.push_str(&targets(
        &measured,
        disk,
        lossless_rate(Mode::File.name()),
        lossless_rate(Mode::Null.name()),
    ));
    println!("{report}");
    write_report(&root().join("docs/BENCHMARKS.md"), &report)?;
    let _ = std::fs::remove_file(CAPTURE);
    Ok(())
}

fn unit(w: &Workload, rate: f64) -> String {
    match w.kind {
        "bulk" => format!("{:.0} MB/s", rate / 1e6),
        "connect" => format!("{rate:.0} conn/s"),
        "loop" => format!("{:.0} ns per write+read", 1e9 / rate),
        _ => format!("{rate:.0} round trips/s"),
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, Linux {}", release.trim())
}

/// Medians of one traced mode of one workload, for the targets.
struct Measured {
    workload: &'static str,
    mode: Mode,
    ratio: f64,
    /// The untraced rate of the same rounds (bytes per second for bulk transfers).
    untraced_rate: f64,
    kept: Option<f64>,
    rss_mib: f64,
    attach: f64,
}

/// The targets, each with what this run measured and whether it met it.
fn targets(measured: &[Measured], disk: f64, lossless_file: u64, lossless_null: u64) -> String {
    let pick = |prefix: &str, mode: Mode| -> Vec<&Measured> {
        measured
            .iter()
            .filter(|m| m.workload.starts_with(prefix) && m.mode == mode)
            .collect()
    };
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let mut out = String::from(
        "### Targets, as measured in this run\n\n| target | measured | verdict |\n|---|---|---|\n",
    );

    let ping = pick("64 B ping-pong", Mode::File);
    let worst = ping.iter().map(|m| m.ratio).fold(f64::INFINITY, f64::min);
    let _ = writeln!(
        out,
        "| 64 B ping-pong, full capture to a file: >= 0.95 of untraced | {} | {} |",
        ping.iter()
            .map(|m| format!("{:.3} ({})", m.ratio, m.workload))
            .collect::<Vec<_>>()
            .join(", "),
        verdict(worst >= 0.95)
    );

    let bulk = pick("64 KiB bulk", Mode::File);
    let ok = bulk
        .iter()
        .all(|m| m.ratio >= 0.5 && m.kept.unwrap_or(0.0) >= 99.0);
    let needed = bulk
        .iter()
        .map(|m| m.untraced_rate / 2.0)
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "| 64 KiB bulk, full capture to a file: >= 0.5 of untraced with >= 99% of the bytes kept \
         | {}. Both at once means writing at least {:.0} MB/s into the file (half the untraced \
         rate); the file system takes {:.0} MB/s | {}{} |",
        bulk.iter()
            .map(|m| format!(
                "{:.3} with {:.1}% kept ({})",
                m.ratio,
                m.kept.unwrap_or(0.0),
                m.workload
            ))
            .collect::<Vec<_>>()
            .join(", "),
        needed / 1e6,
        disk / 1e6,
        verdict(ok),
        if !ok && disk < needed {
            ": impossible on this disk"
        } else {
            ""
        }
    );

    let filtered = pick("", Mode::Filtered);
    let (loops, threaded): (Vec<&Measured>, Vec<&Measured>) = filtered
        .iter()
        .partition(|m| m.workload.contains("one thread"));
    let worst = loops.iter().map(|m| m.ratio).fold(f64::INFINITY, f64::min);
    let _ = writeln!(
        out,
        "| traffic excluded by a kernel-side filter: >= 0.98 of untraced | one thread, fastest \
         50 ms slices (the cost of a send, without scheduling noise): {}; threaded workloads \
         (noisy: rates drift by tens of percent between runs): {} | {} |",
        loops
            .iter()
            .map(|m| format!(
                "{:.3}, {:.0} ns more per write+read ({})",
                m.ratio,
                1e9 / (m.untraced_rate * m.ratio) - 1e9 / m.untraced_rate,
                m.workload
            ))
            .collect::<Vec<_>>()
            .join(", "),
        threaded
            .iter()
            .map(|m| format!("{:.3} ({})", m.ratio, m.workload))
            .collect::<Vec<_>>()
            .join(", "),
        verdict(worst >= 0.98)
    );

    let _ = writeln!(
        out,
        "| lossless capture rate: >= 1 GB/s | {lossless_null} MB/s to /dev/null, \
         {lossless_file} MB/s to a file (highest offered rate without a loss) | {} |",
        verdict(lossless_null.max(lossless_file) >= 1000)
    );

    let rss = measured.iter().map(|m| m.rss_mib).fold(0.0, f64::max);
    let attach = measured.iter().map(|m| m.attach).fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "| peak RSS <= 64 MB; start to attached <= 1 s | at most {rss:.0} MiB; at most {attach:.2} s \
         | {} |",
        verdict(rss * 1.048_576 <= 64.0 && attach <= 1.0)
    );
    out
}

/// Bytes written to measure the capture file system's write rate: as much as a two-second
/// capture of a 64 KiB bulk transfer writes.
const DISK_TEST_BYTES: u64 = 4_000_000_000;

/// The rate at which the capture file's file system takes a sequential write in 1 MiB pieces
/// (buffered, like udstrace's writes), in bytes per second.
fn disk_write_rate() -> Result<f64> {
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

/// Replaces the measured part of the benchmarks page (between its markers), keeping the
/// text around it; a page without markers is written anew.
fn write_report(path: &Path, report: &str) -> Result<()> {
    const BEGIN: &str = "<!-- bench:begin -->";
    const END: &str = "<!-- bench:end -->";
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let page = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{report}{}", &old[..b], &old[e..]),
        _ => format!("{BEGIN}\n{report}{END}\n"),
    };
    std::fs::write(path, page)?;
    Ok(())
}

/// Runs one workload under one mode.
fn run_one(bin: &Path, w: &Workload, mode: Mode, rate: Option<u64>) -> Result<Run> {
    let server = "/tmp/udstrace-bench.sock";
    let proxy = "/tmp/udstrace-bench-proxy.sock";
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
        load.arg(server);
        if mode == Mode::Socat {
            load.arg(proxy);
        } else {
            load.arg(server);
        }
    } else if rate.is_some() {
        load.args(["", ""]);
    }
    if let Some(r) = rate {
        load.arg(r.to_string());
    }

    let mut socat = None;
    if mode == Mode::Socat {
        let _ = std::fs::remove_file(proxy);
        socat = Some(
            Command::new("socat")
                .args([
                    "-x",
                    &format!("UNIX-LISTEN:{proxy},fork"),
                    &format!("UNIX-CONNECT:{server}"),
                ])
                .stderr(Stdio::null())
                .spawn()
                .context("socat")?,
        );
        let start = Instant::now();
        while !Path::new(proxy).exists() && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    let mut tracer = None;
    let mut attach = 0.0;
    if mode.traced() {
        let mut cmd = Command::new(bin.join("udstrace"));
        match mode {
            Mode::File => cmd.args(["-w", CAPTURE]),
            Mode::Null => cmd.args(["-w", "/dev/null"]),
            Mode::Recv => cmd.args(["--recv", "-w", "/dev/null"]),
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
        attach = start.elapsed().as_secs_f64();
        tracer = Some((child, lines));
    }

    let out = load.stdout(Stdio::piped()).output().context("workload")?;
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
    let mut run = Run {
        rate: if w.kind == "bulk" {
            bytes / secs
        } else {
            ops / secs
        },
        cpu_per_op: cpu / ops.max(1.0),
        bytes: bytes as u64,
        attach,
        ..Run::default()
    };
    if let Some(mut s) = socat {
        let _ = s.kill();
        let _ = s.wait();
    }
    if let Some((child, lines)) = tracer {
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
        let summary = rest
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
        run.packets = num(0);
        run.lost = num(1);
        let lost_bytes = if summary.contains("bytes)") {
            num(2)
        } else {
            0
        };
        run.captured = if mode == Mode::File {
            let captured = captured_payload(Path::new(CAPTURE))?;
            // Remove the file now: the kernel drops a deleted file's dirty pages instead of
            // writing them back during the next runs (which skewed them by 10-20%).
            let _ = std::fs::remove_file(CAPTURE);
            captured
        } else if mode == Mode::Recv {
            // Every byte is captured twice, sent and received.
            (2 * run.bytes).saturating_sub(lost_bytes) / 2
        } else {
            run.bytes.saturating_sub(lost_bytes)
        };
        if w.kind != "bulk" {
            // Both directions are sent: the workload counts them in `bytes`.
            run.captured = run.captured.min(run.bytes);
        }
    }
    Ok(run)
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
    #[allow(clippy::cast_precision_loss)]
    let cpu = (usage[0] + usage[2]) as f64 + (usage[1] + usage[3]) as f64 / 1e6;
    Ok((status, (cpu, u64::try_from(usage[4]).unwrap_or(0))))
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    #[link_name = "wait4"]
    fn sys_wait4(pid: i32, status: *mut i32, options: i32, usage: *mut std::ffi::c_void) -> i32;
}
