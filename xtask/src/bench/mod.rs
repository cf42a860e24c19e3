//! `cargo xtask bench`: what udstrace costs the programs it traces, and what it keeps.
//!
//! Every workload (tests/src/bin/udstrace-load.rs) runs for a fixed time under each mode in
//! turn, several rounds, alternating, so that the machine's drift hits every mode alike;
//! figures are medians, ratios are against the untraced runs of the same round. Writes
//! docs/BENCHMARKS.md.

mod measure;
mod report;

use std::path::Path;

use anyhow::{Context, Result};

use self::measure::{disk_write_rate, idle_wakeups, run_one, BpfStats, Run};
use crate::util::{cargo, require_root, root, sh};

const ROUNDS: usize = 3;
/// Rounds of the one-thread loops: their targets sit within a few percent of the reference
/// programs', and a host's busy minute can move a median of three by as much.
const LOOP_ROUNDS: usize = 5;
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
    /// `udstrace reference empty`: a program that returns at once on the tracepoint backend's
    /// hook.
    Empty,
    /// `udstrace reference floor`: a program that records only the time and the payload.
    Floor,
}

impl Mode {
    /// Whether udstrace runs in this mode.
    fn traced(self) -> bool {
        matches!(self, Self::File | Self::Null | Self::Filtered | Self::Recv)
    }

    /// Whether it is one of the reference programs the capture is set against.
    fn reference(self) -> bool {
        matches!(self, Self::Empty | Self::Floor)
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
            Self::Empty => "reference: empty program on the hook",
            Self::Floor => "reference: program keeping time and payload only",
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
    /// Also measured with the reference program that keeps only the time and the payload.
    floor: bool,
}

impl Workload {
    /// The modes this workload runs under, untraced first.
    fn modes(&self) -> Vec<Mode> {
        let mut modes = vec![
            Mode::Untraced,
            Mode::File,
            Mode::Null,
            Mode::Filtered,
            Mode::Strace,
        ];
        if self.recv {
            modes.insert(4, Mode::Recv);
        }
        if self.named {
            modes.push(Mode::Socat);
        }
        if self.floor {
            modes.push(Mode::Floor);
        }
        if self.kind == "loop" {
            // What a send costs, measured without scheduling noise, and what any program on
            // the same hook costs.
            modes = vec![
                Mode::Untraced,
                Mode::Null,
                Mode::Filtered,
                Mode::Empty,
                Mode::Floor,
            ];
        }
        modes
    }
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "64 B ping-pong, socketpair",
        kind: "pingpong",
        size: "64",
        named: false,
        recv: true,
        floor: false,
    },
    Workload {
        name: "64 B ping-pong, named socket",
        kind: "pingpong",
        size: "64",
        named: true,
        recv: false,
        floor: false,
    },
    Workload {
        name: "4 KiB bulk, socketpair",
        kind: "bulk",
        size: "4096",
        named: false,
        recv: false,
        floor: true,
    },
    Workload {
        name: "64 KiB bulk, socketpair",
        kind: "bulk",
        size: "65536",
        named: false,
        recv: true,
        floor: false,
    },
    Workload {
        name: "64 KiB bulk, named socket",
        kind: "bulk",
        size: "65536",
        named: true,
        recv: false,
        floor: false,
    },
    Workload {
        name: "64 B write+read, one thread",
        kind: "loop",
        size: "64",
        named: false,
        recv: false,
        floor: false,
    },
    Workload {
        name: "4 KiB write+read, one thread",
        kind: "loop",
        size: "4096",
        named: false,
        recv: false,
        floor: false,
    },
    Workload {
        name: "short connections, 64 B each way",
        kind: "connect",
        size: "64",
        named: true,
        recv: false,
        floor: false,
    },
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Builds the release binaries the benchmarks run.
fn build() -> Result<()> {
    sh(cargo().args([
        "build",
        "--release",
        "-p",
        "udstrace",
        "-p",
        "udstrace-tests",
        "--bins",
    ]))
}

/// `cargo xtask bench --soak SECONDS`: the soak of tests/tests/soak.rs
/// (tests/src/bin/udstrace-soak.rs) for `seconds`, with the release build; its figures go
/// into docs/BENCHMARKS.md (between the `soak` markers).
pub(crate) fn soak(seconds: u64) -> Result<()> {
    require_root("cargo xtask bench --soak")?;
    build()?;
    let bin = root().join("target/release");
    let out = std::process::Command::new(bin.join("udstrace-soak"))
        .arg(seconds.to_string())
        .arg(bin.join("udstrace"))
        .output()
        .context("udstrace-soak")?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let section = report::soak_section(seconds, &text);
    report::write_section(&root().join("docs/BENCHMARKS.md"), "soak", &section)?;
    anyhow::ensure!(out.status.success(), "the soak failed");
    Ok(())
}

pub(crate) fn run() -> Result<()> {
    require_root("cargo xtask bench")?;
    build()?;
    let bin = root().join("target/release");
    let mut rows = Vec::new();
    let mut measured = Vec::new();
    for w in WORKLOADS {
        let modes = w.modes();
        let runs = rounds(&bin, w, &modes)?;
        for (i, &m) in modes.iter().enumerate() {
            let (row, traced) = report::summarise(w, m, &runs[i], &runs[0]);
            measured.extend(traced);
            rows.push(row);
        }
    }
    let costs = program_costs(&bin)?;
    let lossless = lossless_search(&bin)?;
    let idle = idle_wakeups(&bin)?;
    eprintln!("idle capture: {:.1} wakeups/s", idle.0);

    let disk = disk_write_rate()?;
    eprintln!("file system write rate: {:.0} MB/s", disk / 1e6);

    let report = report::page(&rows, &costs, &lossless, disk, &measured, idle.0);
    println!("{report}");
    report::write_report(&root().join("docs/BENCHMARKS.md"), &report)?;
    let _ = std::fs::remove_file(CAPTURE);
    Ok(())
}

/// `ROUNDS` rounds (`LOOP_ROUNDS` for a loop) of `w` under each of `modes` in turn; the runs
/// of each mode, in `modes` order.
fn rounds(bin: &Path, w: &Workload, modes: &[Mode]) -> Result<Vec<Vec<Run>>> {
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); modes.len()];
    let rounds = if w.kind == "loop" {
        LOOP_ROUNDS
    } else {
        ROUNDS
    };
    for _ in 0..rounds {
        for (i, &m) in modes.iter().enumerate() {
            let r = run_one(bin, w, m, None)?;
            eprintln!("{:<38} {:<32} {:>14.0}/s", w.name, m.name(), r.rate);
            runs[i].push(r);
        }
    }
    Ok(runs)
}

/// What the kernel programs cost one send, by the kernel's own count.
struct ProgramCost {
    workload: &'static str,
    mode: Mode,
    /// Median ns per send.
    ns: f64,
}

/// The kernel programs' time per send in the one-thread loops, for the capture and the
/// reference programs: `ROUNDS` rounds, modes alternating, medians. A pass of its own: the
/// kernel's count adds its clock reads to every run, so the table's rates are measured
/// without it.
fn program_costs(bin: &Path) -> Result<Vec<ProgramCost>> {
    let modes = [Mode::Null, Mode::Filtered, Mode::Empty, Mode::Floor];
    let _stats = BpfStats::enable()?;
    let mut costs = Vec::new();
    for w in WORKLOADS.iter().filter(|w| w.kind == "loop") {
        let mut runs = vec![Vec::new(); modes.len()];
        for _ in 0..ROUNDS {
            for (i, &m) in modes.iter().enumerate() {
                let ns = run_one(bin, w, m, None)?
                    .program_ns
                    .with_context(|| format!("{} under {}: no program ran", w.name, m.name()))?;
                eprintln!(
                    "{:<38} {:<32} {ns:>8.0} ns per send (bpf_stats)",
                    w.name,
                    m.name()
                );
                runs[i].push(ns);
            }
        }
        for (i, &mode) in modes.iter().enumerate() {
            costs.push(ProgramCost {
                workload: w.name,
                mode,
                ns: median(std::mem::take(&mut runs[i])),
            });
        }
    }
    Ok(costs)
}

/// One paced bulk run of the lossless-rate search.
struct Lossless {
    /// The mode's name.
    output: &'static str,
    /// MB/s.
    offered: u64,
    /// MB/s.
    achieved: f64,
    lost: u64,
    /// Percent of the bytes sent.
    kept: f64,
}

/// The largest bulk rate captured without loss, to a file and to /dev/null: 64 KiB writes
/// over a socketpair, paced at rising rates.
fn lossless_search(bin: &Path) -> Result<Vec<Lossless>> {
    let mut lossless = Vec::new();
    for mode in [Mode::File, Mode::Null] {
        for rate_mb in [250u64, 500, 1000, 1500, 2000] {
            let w = WORKLOADS
                .iter()
                .find(|w| w.name == "64 KiB bulk, socketpair")
                .context("no bulk workload")?;
            let r = run_one(bin, w, mode, Some(rate_mb * 1_000_000))?;
            eprintln!(
                "lossless search: {}, offered {rate_mb} MB/s, achieved {:.0} MB/s, lost {}",
                mode.name(),
                r.rate / 1e6,
                r.lost
            );
            lossless.push(Lossless {
                output: mode.name(),
                offered: rate_mb,
                achieved: r.rate / 1e6,
                lost: r.lost,
                kept: r.kept_percent(),
            });
        }
    }
    Ok(lossless)
}
