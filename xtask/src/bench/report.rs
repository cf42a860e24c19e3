//! The benchmarks page: one table row per workload and mode, the lossless rates, the targets.

// Rates, ratios and percentages: floating-point arithmetic on counters by design.
#![allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]

use std::{fmt::Write as _, path::Path};

use super::{
    measure::{Run, DISK_TEST_BYTES},
    median, Lossless, Mode, ProgramCost, Workload, LOOP_ROUNDS, ROUNDS, SECONDS,
};

/// Medians of one traced mode of one workload, for the targets.
pub(super) struct Measured {
    workload: &'static str,
    mode: Mode,
    ratio: f64,
    /// The untraced rate of the same rounds (bytes per second for bulk transfers).
    untraced_rate: f64,
    kept: Option<f64>,
    rss_mib: f64,
    attach: f64,
}

/// The table row of workload `w` under mode `m` from its runs and the untraced runs of the
/// same rounds, and the medians the targets need if udstrace ran.
pub(super) fn summarise(
    w: &Workload,
    m: Mode,
    runs: &[Run],
    untraced: &[Run],
) -> (String, Option<Measured>) {
    let base: Vec<f64> = untraced.iter().map(|r| r.rate).collect();
    let (ratio, rate, base_rate) = if w.kind == "loop" {
        // A loop's cost of a send: its fastest slice over all rounds, against the untraced
        // fastest. A one-thread loop on a CPU of its own can only be slowed by the machine
        // (another tenant on the CPU, a busy minute of the host), never sped up, and a slow
        // spell can last a whole run (three of one mode's five, in one run of this bench).
        let fastest = |v: &mut dyn Iterator<Item = f64>| v.fold(0.0, f64::max);
        let rate = fastest(&mut runs.iter().map(|r| r.rate));
        let base_rate = fastest(&mut base.iter().copied());
        (rate / base_rate, rate, base_rate)
    } else {
        (
            median(runs.iter().zip(&base).map(|(r, b)| r.rate / b).collect()),
            median(runs.iter().map(|r| r.rate).collect()),
            median(base),
        )
    };
    let base_cpu: Vec<f64> = untraced.iter().map(|r| r.cpu_per_op).collect();
    let cpu_ratio = median(
        runs.iter()
            .zip(&base_cpu)
            .map(|(r, b)| b / r.cpu_per_op)
            .collect(),
    );
    // A loop reports its fastest slice only; the capture holds every slice.
    let kept_pct = (matches!(m, Mode::File | Mode::Null | Mode::Recv) && w.kind != "loop")
        .then(|| median(runs.iter().map(Run::kept_percent).collect()));
    let kept = kept_pct.map_or_else(String::new, |k| format!("{k:.1}%"));
    let traced = m.traced();
    let lost = if traced {
        format!(
            "{}",
            median(runs.iter().map(|r| r.lost as f64).collect()) as u64
        )
    } else {
        String::new()
    };
    let measured = (traced || m.reference()).then(|| Measured {
        workload: w.name,
        mode: m,
        ratio,
        untraced_rate: base_rate,
        kept: kept_pct,
        rss_mib: median(runs.iter().map(|r| r.rss_kib as f64).collect()) / 1024.0,
        attach: median(runs.iter().map(|r| r.attach).collect()),
    });
    let own = if traced {
        format!(
            "{:.2} s, {} MiB, {:.2} s",
            median(runs.iter().map(|r| r.cpu).collect()),
            median(runs.iter().map(|r| r.rss_kib as f64).collect()) as u64 / 1024,
            median(runs.iter().map(|r| r.attach).collect())
        )
    } else {
        String::new()
    };
    let row = format!(
        "| {} | {} | {} | {:.3} | {:.3} | {} | {} | {} |",
        w.name,
        m.name(),
        unit(w, rate),
        ratio,
        cpu_ratio,
        kept,
        lost,
        own
    );
    (row, measured)
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

/// The measured part of the benchmarks page: the table of `rows`, the lossless rates, the
/// file system's write rate `disk` (bytes per second) and the targets.
pub(super) fn page(
    rows: &[String],
    costs: &[ProgramCost],
    lossless: &[Lossless],
    disk: f64,
    measured: &[Measured],
    idle: f64,
) -> String {
    let mut report = String::new();
    let _ = writeln!(
        report,
        "Written by `cargo xtask bench` (tests/src/bin/udstrace-load.rs workloads, {ROUNDS} rounds of \
         {SECONDS} s per mode ({LOOP_ROUNDS} for the one-thread loops), modes alternating; medians; ratios against the untraced run of the same \
         round; for the one-thread loops, the fastest 50 ms slice of all rounds against the untraced fastest). Machine: {}. A noisy shared 2-core machine: compare ratios, not absolute rates.\n",
        machine()
    );
    let _ = writeln!(report, "| workload | mode | rate | rate vs untraced | workload CPU per op, untraced / traced | bytes kept | lost | udstrace CPU, peak RSS, start-to-attached |");
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(report, "{r}");
    }
    write_program_costs(&mut report, costs);
    write_lossless(&mut report, lossless, disk);
    let _ = writeln!(
        report,
        "An idle capture (udstrace capturing only process 1, which sends nothing: no record \
         reaches the ring buffer) wakes the machine {idle:.1} times a second (the voluntary \
         context switches of all its threads over 10 s).\n"
    );
    let lossless_rate = |output: &str| {
        lossless
            .iter()
            .filter(|l| l.output == output && l.lost == 0)
            .map(|l| l.offered)
            .max()
            .unwrap_or(0)
    };
    report.push_str(&targets(
        measured,
        costs,
        disk,
        lossless_rate(Mode::File.name()),
        lossless_rate(Mode::Null.name()),
        idle,
    ));
    report
}

/// The modes of the program-time table, in its column order.
const COST_MODES: [Mode; 4] = [Mode::Null, Mode::Filtered, Mode::Empty, Mode::Floor];

/// The median ns per send of `mode` on the workload whose name starts with `workload`, if
/// measured.
fn cost(costs: &[ProgramCost], workload: &str, mode: Mode) -> Option<f64> {
    costs
        .iter()
        .find(|c| c.workload.starts_with(workload) && c.mode == mode)
        .map(|c| c.ns)
}

/// The kernel programs' time per send in the one-thread loops, and what the capture's parts
/// cost beyond the reference programs.
fn write_program_costs(report: &mut String, costs: &[ProgramCost]) {
    let mut workloads: Vec<&str> = costs.iter().map(|c| c.workload).collect();
    workloads.dedup();
    if workloads.is_empty() {
        return;
    }
    let _ = writeln!(
        report,
        "\nKernel programs' time per send, by the kernel's own count \
         (`kernel.bpf_stats_enabled`, on only for these runs; its two clock reads are in every \
         figure, as the empty program's shows): the one-thread loops, {ROUNDS} rounds of \
         {SECONDS} s per mode, modes alternating, medians.\n"
    );
    let names: Vec<&str> = COST_MODES.iter().map(|m| m.name()).collect();
    let _ = writeln!(report, "| workload | {} |", names.join(" | "));
    let _ = writeln!(report, "|---|{}", "---|".repeat(COST_MODES.len()));
    for w in &workloads {
        let cells: Vec<String> = COST_MODES
            .iter()
            .map(|&m| cost(costs, w, m).map_or_else(String::new, |ns| format!("{ns:.0} ns")))
            .collect();
        let _ = writeln!(report, "| {w} | {} |", cells.join(" | "));
    }
    let _ = writeln!(report);
    for w in &workloads {
        let ns = |m| cost(costs, w, m).unwrap_or(f64::NAN);
        let _ = writeln!(
            report,
            "- {w}: the capture's program takes {:.0} ns a send more than the one that keeps \
             only the time and the payload (the fields it records), and the filtered-out \
             send {:.0} ns more than the empty program (the checks before the program returns).",
            ns(Mode::Null) - ns(Mode::Floor),
            ns(Mode::Filtered) - ns(Mode::Empty),
        );
    }
}

/// The lossless-rate table and the file system's write rate.
fn write_lossless(report: &mut String, lossless: &[Lossless], disk: f64) {
    let _ = writeln!(
        report,
        "\nLossless capture rate (64 KiB writes over a socketpair, paced):\n"
    );
    let _ = writeln!(
        report,
        "| output | offered | achieved | lost segments | bytes kept |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    for Lossless {
        output,
        offered,
        achieved,
        lost,
        kept,
    } in lossless
    {
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
}

/// The targets, each with what this run measured and whether it met it.
fn targets(
    measured: &[Measured],
    costs: &[ProgramCost],
    disk: f64,
    lossless_file: u64,
    lossless_null: u64,
    idle: f64,
) -> String {
    let mut out = String::from(
        "### Targets, as measured in this run\n\n| target | measured | verdict |\n|---|---|---|\n",
    );
    per_message_targets(&mut out, measured, costs);
    ping_pong_target(&mut out, measured);
    bulk_target(&mut out, measured, disk);
    filtered_target(&mut out, measured);
    let _ = writeln!(
        out,
        "| lossless capture rate: >= 1 GB/s | {lossless_null} MB/s to /dev/null, \
         {lossless_file} MB/s to a file (highest offered rate without a loss) | {} |",
        verdict(lossless_null.max(lossless_file) >= 1000)
    );
    footprint_target(&mut out, measured);
    let _ = writeln!(
        out,
        "| idle capture: at most a few wakeups a second (<= 5) | {idle:.1} wakeups/s | {} |",
        verdict(idle <= 5.0)
    );
    out
}

/// The measurements of `mode` on the workloads whose names start with `prefix`.
fn pick<'a>(measured: &'a [Measured], prefix: &str, mode: Mode) -> Vec<&'a Measured> {
    measured
        .iter()
        .filter(|m| m.workload.starts_with(prefix) && m.mode == mode)
        .collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

/// One row: the ratios of `mode` on the workloads whose names start with each of
/// `prefixes`, each against its own minimum (and, with `kept`, every byte kept). With
/// `reference`, the ratios of that reference program on the same workloads follow; when the
/// target is not met and the reference program misses it too, the verdict says so: no capture
/// on this hook can meet it on this machine. `note` (if not empty) ends the measured cell.
#[allow(
    clippy::too_many_arguments,
    reason = "one row's parts, each named at its call"
)]
fn ratio_row(
    out: &mut String,
    target: &str,
    measured: &[Measured],
    mode: Mode,
    wanted: &[(&str, f64)],
    kept: bool,
    reference: Option<Mode>,
    note: &str,
) {
    let mut ok = true;
    let mut shown = Vec::new();
    for &(prefix, min) in wanted {
        for m in pick(measured, prefix, mode) {
            let whole = m.kept.is_none_or(|k| k >= 100.0);
            ok &= m.ratio >= min && (!kept || whole);
            shown.push(match m.kept {
                Some(k) if kept => format!("{:.3} with {k:.1}% kept ({})", m.ratio, m.workload),
                _ => format!("{:.3} ({})", m.ratio, m.workload),
            });
        }
    }
    if shown.is_empty() {
        ok = false;
        shown.push("not measured".to_string());
    }
    let mut text = shown.join(", ");
    let mut out_of_reach = false;
    if let Some(reference) = reference {
        let mut shown = Vec::new();
        // Every workload that misses the target: whether the reference program misses it too.
        let mut all_misses_out_of_reach = true;
        for &(prefix, min) in wanted {
            let missed = pick(measured, prefix, mode).iter().any(|m| m.ratio < min);
            for m in pick(measured, prefix, reference) {
                all_misses_out_of_reach &= !missed || m.ratio < min;
                shown.push(format!("{:.3} ({})", m.ratio, m.workload));
            }
        }
        if !shown.is_empty() {
            let _ = write!(text, "; {}: {}", reference.name(), shown.join(", "));
            out_of_reach = !ok && all_misses_out_of_reach;
        }
    }
    if !note.is_empty() {
        let _ = write!(text, "; {note}");
    }
    let judged = if out_of_reach {
        "not met: out of reach here, the reference program misses it too where this does"
    } else {
        verdict(ok)
    };
    let _ = writeln!(out, "| {target} | {text} | {judged} |");
}

/// The per-message cost: the one-thread loops (the cost of one send, without scheduling) and
/// the bulk transfers, whose rate is set by it.
fn per_message_targets(out: &mut String, measured: &[Measured], costs: &[ProgramCost]) {
    // The kernel's count of the programs' time per send, `mode` against `reference`.
    let per_send = |mode: Mode, reference: Mode| {
        let mut parts = Vec::new();
        for w in ["64 B write+read", "4 KiB write+read"] {
            if let (Some(a), Some(b)) = (cost(costs, w, mode), cost(costs, w, reference)) {
                parts.push(format!("{a:.0} against {b:.0} ns ({w})"));
            }
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(
                "the programs' time per send (kernel's count), against the reference's: {}",
                parts.join(", ")
            )
        }
    };
    ratio_row(
        out,
        "one thread, every byte captured: 64 B write+read >= 0.80 of untraced, 4 KiB >= 0.75",
        measured,
        Mode::Null,
        &[("64 B write+read", 0.80), ("4 KiB write+read", 0.75)],
        false,
        Some(Mode::Floor),
        &per_send(Mode::Null, Mode::Floor),
    );
    ratio_row(
        out,
        "one thread, the workload filtered out in the kernel: >= 0.96 of untraced",
        measured,
        Mode::Filtered,
        &[("64 B write+read", 0.96), ("4 KiB write+read", 0.96)],
        false,
        Some(Mode::Empty),
        &per_send(Mode::Filtered, Mode::Empty),
    );
    ratio_row(
        out,
        "4 KiB bulk (two threads) to /dev/null: >= 0.55 of untraced",
        measured,
        Mode::Null,
        &[("4 KiB bulk", 0.55)],
        true,
        Some(Mode::Floor),
        "",
    );
    ratio_row(
        out,
        "64 KiB bulk to /dev/null: >= 0.70 of untraced, every byte kept",
        measured,
        Mode::Null,
        &[("64 KiB bulk", 0.70)],
        true,
        None,
        "",
    );
    ratio_row(
        out,
        "64 KiB bulk with `--recv` to /dev/null: >= 0.5 of untraced, every byte kept",
        measured,
        Mode::Recv,
        &[("64 KiB bulk", 0.5)],
        true,
        None,
        "",
    );
}

/// Small messages, every byte captured to a file.
fn ping_pong_target(out: &mut String, measured: &[Measured]) {
    let ping = pick(measured, "64 B ping-pong", Mode::File);
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
}

/// Bulk transfers, every byte captured to a file on a disk that may not keep up.
fn bulk_target(out: &mut String, measured: &[Measured], disk: f64) {
    let bulk = pick(measured, "64 KiB bulk", Mode::File);
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
}

/// Traffic a kernel-side filter leaves out.
fn filtered_target(out: &mut String, measured: &[Measured]) {
    let filtered = pick(measured, "", Mode::Filtered);
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
}

/// udstrace's own memory and start-up time.
fn footprint_target(out: &mut String, measured: &[Measured]) {
    let captures = || measured.iter().filter(|m| m.mode.traced());
    let rss = captures().map(|m| m.rss_mib).fold(0.0, f64::max);
    let attach = captures().map(|m| m.attach).fold(0.0, f64::max);
    let typical = median(captures().map(|m| m.attach).collect());
    let _ = writeln!(
        out,
        "| peak RSS <= 64 MB | at most {rss:.0} MiB | {} |",
        verdict(rss * 1.048_576 <= 64.0)
    );
    let references: Vec<f64> = measured
        .iter()
        .filter(|m| m.mode.reference())
        .map(|m| m.attach)
        .collect();
    let reference = if references.is_empty() {
        String::new()
    } else {
        format!(
            "; the reference programs' starts (the same reads of the kernel's facts and the \
             same object load, then a program of a few instructions to verify): median {:.3} s",
            median(references)
        )
    };
    let _ = writeln!(
        out,
        "| start to attached, auto mode: <= 0.10 s | median {typical:.3} s, at most {attach:.3} s \
         (every traced row's runs; the median is the verdict's: one slow start on this shared \
         machine is its load, not udstrace){reference} | {} |",
        verdict(typical <= 0.10)
    );
}

/// Replaces the measured part of the benchmarks page (between its markers), keeping the
/// text around it; a page without markers is written anew.
pub(super) fn write_report(path: &Path, report: &str) -> anyhow::Result<()> {
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

/// Puts `text` between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in the page at `path`,
/// appending the markers at the end when the page has none.
pub(super) fn write_section(path: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let page = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{begin}\n{text}{}", &old[..b], &old[e..]),
        _ => format!("{old}\n{begin}\n{text}{end}\n"),
    };
    std::fs::write(path, page)?;
    Ok(())
}

/// The soak's section of the page, from udstrace-soak's output: its resident memory and
/// descriptors over time (about 15 samples of the per-second ones), and its verdict lines.
pub(super) fn soak_section(seconds: u64, output: &str) -> String {
    let samples: Vec<Vec<(&str, &str)>> = output
        .lines()
        .filter(|l| l.starts_with("t="))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .collect()
        })
        .collect();
    let field = |s: &[(&str, &str)], key: &str| {
        s.iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| *v)
            .to_string()
    };
    let mut page = format!(
        "### Soak: {seconds} s of short connections at full rate\n\n\
         `cargo xtask bench --soak {seconds}` (tests/src/bin/udstrace-soak.rs, release build): \
         two threads connect to a named socket, send 64 bytes, read them back and close, as \
         fast as they can, while udstrace captures every process to /dev/null. Its resident \
         memory (VmRSS) and descriptors, sampled every second:\n\n\
         | seconds | RSS (MB) | peak so far (MB) | fds | connections |\n\
         |--:|--:|--:|--:|--:|\n"
    );
    let step = (samples.len() / 15).max(1);
    for (i, s) in samples.iter().enumerate() {
        if i % step != 0 && i + 1 != samples.len() {
            continue;
        }
        let mb = |key| {
            field(s, key)
                .parse::<f64>()
                .map_or(String::new(), |kb| format!("{:.1}", kb / 1024.0))
        };
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} | {} |",
            field(s, "t"),
            mb("rss_kb"),
            mb("hwm_kb"),
            field(s, "fds"),
            field(s, "connections"),
        );
    }
    page.push_str("\nAfter udstrace exited:\n\n```text\n");
    for line in output.lines().filter(|l| !l.starts_with("t=")) {
        page.push_str(line);
        page.push('\n');
    }
    page.push_str("```\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(workload: &'static str, mode: Mode, ratio: f64) -> Measured {
        Measured {
            workload,
            mode,
            ratio,
            untraced_rate: 1e6,
            kept: None,
            rss_mib: 50.0,
            attach: 0.2,
        }
    }

    fn row(measured: &[Measured]) -> String {
        let mut out = String::new();
        ratio_row(
            &mut out,
            "t",
            measured,
            Mode::Null,
            &[("64 B write+read", 0.80), ("4 KiB write+read", 0.75)],
            false,
            Some(Mode::Floor),
            "",
        );
        out
    }

    #[test]
    fn a_loop_is_judged_by_its_fastest_runs_others_by_the_median_ratio() {
        let runs = |rates: &[f64]| -> Vec<Run> {
            rates
                .iter()
                .map(|&rate| {
                    let mut run = Run::default();
                    run.rate = rate;
                    run.cpu_per_op = 1.0;
                    run
                })
                .collect()
        };
        let workload = |kind| Workload {
            name: "w",
            kind,
            size: "64",
            named: false,
            recv: false,
            floor: false,
        };
        let untraced = runs(&[100.0, 80.0, 100.0]);
        let traced = runs(&[50.0, 90.0, 60.0]);
        let (_, m) = summarise(&workload("loop"), Mode::Null, &traced, &untraced);
        assert!((m.unwrap().ratio - 0.9).abs() < 1e-9);
        let (_, m) = summarise(&workload("bulk"), Mode::Null, &traced, &untraced);
        // Ratios per round 0.5, 1.125, 0.6: the median.
        assert!((m.unwrap().ratio - 0.6).abs() < 1e-9);
    }

    #[test]
    fn program_costs_are_tabled_and_set_against_the_references() {
        let costs: Vec<ProgramCost> = [
            (Mode::Null, 479.0),
            (Mode::Filtered, 63.0),
            (Mode::Empty, 53.0),
            (Mode::Floor, 272.0),
        ]
        .into_iter()
        .map(|(mode, ns)| ProgramCost {
            workload: "64 B write+read, one thread",
            mode,
            ns,
        })
        .collect();
        let mut text = String::new();
        write_program_costs(&mut text, &costs);
        assert!(
            text.contains("| 64 B write+read, one thread | 479 ns | 63 ns | 53 ns | 272 ns |"),
            "{text}"
        );
        assert!(text.contains("takes 207 ns a send more"), "{text}");
        assert!(text.contains("send 10 ns more than the empty"), "{text}");
        let mut row = String::new();
        per_message_targets(&mut row, &[], &costs);
        assert!(
            row.contains("479 against 272 ns (64 B write+read)"),
            "{row}"
        );
        assert!(row.contains("63 against 53 ns (64 B write+read)"), "{row}");
    }

    #[test]
    fn a_target_the_reference_program_misses_too_is_out_of_reach() {
        let below = [
            measured("64 B write+read", Mode::Null, 0.70),
            measured("4 KiB write+read", Mode::Null, 0.69),
            measured("64 B write+read", Mode::Floor, 0.79),
            measured("4 KiB write+read", Mode::Floor, 0.74),
        ];
        let text = row(&below);
        assert!(text.contains("out of reach"), "{text}");
        assert!(text.contains("0.790 (64 B write+read)"), "{text}");
    }

    #[test]
    fn only_the_missed_workloads_reference_counts() {
        let mixed = [
            measured("64 B write+read", Mode::Null, 0.70),
            measured("4 KiB write+read", Mode::Null, 0.76),
            measured("64 B write+read", Mode::Floor, 0.79),
            measured("4 KiB write+read", Mode::Floor, 0.78),
        ];
        let text = row(&mixed);
        assert!(text.contains("out of reach"), "{text}");
    }

    #[test]
    fn a_target_the_reference_program_meets_is_simply_not_met() {
        let reachable = [
            measured("64 B write+read", Mode::Null, 0.70),
            measured("4 KiB write+read", Mode::Null, 0.69),
            measured("64 B write+read", Mode::Floor, 0.81),
            measured("4 KiB write+read", Mode::Floor, 0.74),
        ];
        let text = row(&reachable);
        assert!(text.ends_with("| not met |\n"), "{text}");
        let met = [
            measured("64 B write+read", Mode::Null, 0.85),
            measured("4 KiB write+read", Mode::Null, 0.80),
            measured("64 B write+read", Mode::Floor, 0.79),
        ];
        assert!(row(&met).ends_with("| met |\n"));
    }
}
