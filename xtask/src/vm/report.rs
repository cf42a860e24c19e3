//! Results: each backend's cell on each kernel, and the table that ends a run.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

#[cfg(test)]
use super::BACKENDS;
use super::{guest::Supervised, Job, FALLBACK_BACKEND};

/// Lines of a failing log shown in the report.
const TAIL_LINES: usize = 30;

/// One backend on one kernel.
enum Cell {
    Pass {
        passed: u64,
    },
    Fail {
        passed: u64,
        total: u64,
        failed: Vec<String>,
        note: Option<&'static str>,
        log: PathBuf,
    },
    /// The kernel cannot: why.
    Unsupported(String),
    /// Should work but failed to load or attach: how.
    Error(String),
    /// Not tried, and not a failure: why.
    Skipped(String),
    /// Should have run but left no result: why.
    Missing(String),
}

impl Cell {
    fn failed(&self) -> bool {
        matches!(self, Self::Fail { .. } | Self::Error(_) | Self::Missing(_))
    }

    fn text(&self) -> String {
        match self {
            Self::Pass { passed } => format!("pass {passed}/{passed}"),
            Self::Fail { passed, total, .. } => format!("FAIL {passed}/{total}"),
            Self::Unsupported(_) => "unsupported".into(),
            Self::Error(_) => "error".into(),
            Self::Skipped(_) => "-".into(),
            Self::Missing(_) => "no result".into(),
        }
    }

    /// The footnote text, if the cell has one.
    fn footnote(&self) -> Option<&str> {
        match self {
            Self::Unsupported(s) | Self::Error(s) | Self::Skipped(s) | Self::Missing(s) => Some(s),
            Self::Fail { note, .. } => *note,
            Self::Pass { .. } => None,
        }
    }
}

/// One kernel's results.
pub(super) struct Row {
    label: String,
    host: bool,
    release: Option<String>,
    btf: Option<bool>,
    /// One per tested backend, in `Job::backends` order.
    cells: Vec<(&'static str, Cell, Option<Duration>)>,
    boot: Option<Duration>,
    wall: Option<Duration>,
    /// What went wrong with the kernel as a whole.
    problem: Option<String>,
    dir: PathBuf,
    /// The guest's console, or the host job's output.
    log: Option<PathBuf>,
}

impl Row {
    /// A kernel that could not be run at all.
    pub(super) fn broken(label: &str, dir: &Path, error: &anyhow::Error) -> Self {
        Self {
            label: label.into(),
            host: label == "host",
            release: None,
            btf: None,
            cells: Vec::new(),
            boot: None,
            wall: None,
            problem: Some(format!("{error:#}")),
            dir: dir.to_path_buf(),
            log: None,
        }
    }

    /// Reads what a job left in `dir`.
    pub(super) fn collect(
        label: &str,
        host: bool,
        dir: &Path,
        log: &Path,
        run: &Supervised,
        job: &Job,
        expected_release: Option<&str>,
    ) -> Self {
        let read = |name: &str| fs::read_to_string(dir.join(name)).ok();
        let release = read("uname").map(|s| s.trim().to_string());
        let problem = if run.timed_out {
            Some(format!(
                "timed out after {} and killed",
                duration(run.elapsed)
            ))
        } else if let Some((_, why)) = run.mark("init failed: ") {
            Some(format!("the guest's init failed: {why}"))
        } else if run.mark("job end").is_none() {
            Some("stopped before its job ended".into())
        } else {
            match (expected_release, &release) {
                (Some(want), Some(got)) if want != got => Some(format!("booted {got}, not {want}")),
                _ => None,
            }
        };
        let statuses = backend_statuses(dir);
        let cells = job
            .backends
            .iter()
            .map(|&b| {
                let (cell, time) = cell(dir, b, statuses.as_ref(), run);
                (b, cell, time)
            })
            .collect();
        Self {
            label: label.into(),
            host,
            release,
            btf: read("btf").map(|s| s.trim() == "yes"),
            cells,
            boot: if host {
                None
            } else {
                run.mark("job start").map(|(at, _)| at)
            },
            wall: Some(run.elapsed),
            problem,
            dir: dir.to_path_buf(),
            log: Some(log.to_path_buf()),
        }
    }

    /// One kernel's row from the rows of its guests (each testing some of `backends`): each
    /// backend's cell from the guest that tested it, the earliest boot, the longest wall time,
    /// and every guest's problem. None for no guest at all.
    /// The row with each of the `supported` backends that was found unsupported turned into
    /// an error: the kernel supported it when last measured.
    #[must_use]
    pub(super) fn expecting(mut self, supported: &[&str]) -> Self {
        for (name, cell, _) in &mut self.cells {
            if let Cell::Unsupported(why) = cell {
                if supported.contains(name) {
                    *cell = Cell::Error(format!("worked on this kernel before, now: {why}"));
                }
            }
        }
        self
    }

    pub(super) fn merge(parts: Vec<Self>, backends: &[&'static str]) -> Option<Self> {
        let mut parts = parts.into_iter();
        let mut row = parts.next()?;
        for part in parts {
            row.release = row.release.or(part.release);
            row.btf = row.btf.or(part.btf);
            row.boot = match (row.boot, part.boot) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            row.wall = row.wall.max(part.wall);
            if let Some(problem) = part.problem {
                let guest = part
                    .dir
                    .file_name()
                    .map_or_else(|| part.label.clone(), |n| n.to_string_lossy().into_owned());
                let problem = format!("guest {guest}: {problem}");
                if row.problem.is_none() {
                    // The failing guest's console is the one to show.
                    row.log = part.log;
                }
                row.problem = Some(match row.problem.take() {
                    Some(p) => format!("{p}; {problem}"),
                    None => problem,
                });
            }
            row.cells.extend(part.cells);
        }
        let mut cells = std::mem::take(&mut row.cells);
        row.cells = backends
            .iter()
            .map(|&b| match cells.iter().position(|(c, _, _)| *c == b) {
                Some(at) => cells.swap_remove(at),
                None => (b, Cell::Missing("its guest did not run".into()), None),
            })
            .collect();
        Some(row)
    }

    pub(super) fn failed(&self) -> bool {
        self.problem.is_some() || self.cells.iter().any(|(_, c, _)| c.failed())
    }

    fn title(&self) -> String {
        let release = self.release.as_deref().unwrap_or("?");
        if self.host {
            format!("host {release}")
        } else {
            format!("{} ({release})", self.label)
        }
    }
}

/// What `udstrace backends` said: Ok(name -> (status, detail)), or Err(why it is unavailable);
/// None if the job never asked.
type Statuses = Result<HashMap<String, (String, String)>, String>;

fn backend_statuses(dir: &Path) -> Option<Statuses> {
    let rc = fs::read_to_string(dir.join("backends.rc")).ok()?;
    if rc.trim() != "0" {
        let err = fs::read_to_string(dir.join("backends.err")).unwrap_or_default();
        let why = err.lines().next().unwrap_or("no message").to_string();
        return Some(Err(format!(
            "`udstrace backends` failed (exit {}: {why}); only {FALLBACK_BACKEND} was tried",
            rc.trim()
        )));
    }
    let tsv = fs::read_to_string(dir.join("backends.tsv")).unwrap_or_default();
    Some(Ok(tsv
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let name = f.next()?.to_string();
            let status = f.next()?.to_string();
            Some((name, (status, f.next().unwrap_or_default().to_string())))
        })
        .collect()))
}

/// Whether `backend` should have been tested, or the cell that says why not.
fn verdict(backend: &str, statuses: Option<&Statuses>) -> Result<(), Cell> {
    match statuses {
        None => Err(Cell::Missing(
            "the job never got to `udstrace backends`".into(),
        )),
        Some(Err(why)) if backend != FALLBACK_BACKEND => Err(Cell::Skipped(why.clone())),
        Some(Err(_)) => Ok(()),
        Some(Ok(map)) => match map.get(backend).map(|(s, d)| (s.as_str(), d)) {
            None => Err(Cell::Error("not listed by `udstrace backends`".into())),
            Some(("ok", _)) => Ok(()),
            Some(("unsupported", detail)) => Err(Cell::Unsupported(detail.clone())),
            Some(("error", detail)) => Err(Cell::Error(detail.clone())),
            Some((other, detail)) => {
                Err(Cell::Error(format!("unknown status {other:?}: {detail}")))
            }
        },
    }
}

/// One backend's cell and test time.
fn cell(
    dir: &Path,
    backend: &str,
    statuses: Option<&Statuses>,
    run: &Supervised,
) -> (Cell, Option<Duration>) {
    if let Err(cell) = verdict(backend, statuses) {
        return (cell, None);
    }
    let start = run.mark(&format!("test {backend} start")).map(|(at, _)| at);
    let end = run.mark(&format!("test {backend} end "));
    let time = match (start, end) {
        (Some(s), Some((e, _))) => Some(e.saturating_sub(s)),
        (Some(s), None) => Some(run.elapsed.saturating_sub(s)),
        _ => None,
    };
    let log = dir.join(format!("test-{backend}.log"));
    let Ok(text) = fs::read_to_string(&log) else {
        return (Cell::Missing("the tests did not start".into()), time);
    };
    let exit = end.map(|(_, rc)| rc.trim().to_string());
    (test_cell(&text, exit.as_deref(), log), time)
}

/// The cell of a capture test run from its libtest output and exit status.
fn test_cell(text: &str, exit: Option<&str>, log: PathBuf) -> Cell {
    let mut passed = 0;
    let mut failed = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        if rest.ends_with(" ... ok") {
            passed += 1;
        } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
            failed.push(name.to_string());
        }
    }
    let summary = text.lines().any(|l| l.starts_with("test result: "));
    // libtest announces `running N tests` first: the total even of a run cut short.
    let announced = text
        .lines()
        .find_map(|l| l.strip_prefix("running ")?.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    let total = announced.max(passed + failed.len() as u64);
    let note = if exit.is_none() {
        Some("the test run was cut short")
    } else if !summary {
        Some("the test binary ended without a summary")
    } else if total == 0 {
        Some("no test matched")
    } else if failed.is_empty() && exit != Some("0") {
        Some("the test binary failed after its tests")
    } else {
        None
    };
    if failed.is_empty() && note.is_none() {
        Cell::Pass { passed }
    } else {
        Cell::Fail {
            passed,
            total,
            failed,
            note,
            log,
        }
    }
}

/// `--bench`: every guest's `bench-BACKEND.log` under `out`, as one table of ratios (the
/// loop's rate traced against untraced, medians of the rounds) and each backend's cost
/// against the tracepoint backend's in the same guest.
pub(super) fn bench(out: &Path, total: Duration) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    let mut dirs: Vec<PathBuf> = fs::read_dir(out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let release = fs::read_to_string(dir.join("uname")).unwrap_or_default();
        let mut logs: Vec<PathBuf> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "log")
                    && p.file_stem()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("bench-"))
            })
            .collect();
        logs.sort();
        for log in logs {
            let backend = log
                .file_stem()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("bench-"))
                .unwrap_or("?")
                .to_string();
            let text = fs::read_to_string(&log)?;
            let ratios: Vec<String> = ["64", "4096"]
                .iter()
                .map(|size| {
                    bench_ratio(&text, size).map_or_else(|| "-".to_string(), |r| format!("{r:.3}"))
                })
                .collect();
            lines.push((release.trim().to_string(), backend, ratios));
        }
    }
    anyhow::ensure!(
        !lines.is_empty(),
        "no guest wrote a bench log under {}",
        out.display()
    );
    println!("one-thread write+read, every byte captured to /dev/null: rate traced / untraced");
    println!("(medians of 3 rounds in the same guest; emulated: compare ratios only)\n");
    println!("| kernel | backend | 64 B | 4 KiB |\n|---|---|---|---|");
    for (release, backend, ratios) in &lines {
        println!("| {release} | {backend} | {} | {} |", ratios[0], ratios[1]);
    }
    println!("\n{}", duration(total));
    Ok(())
}

/// The median over rounds of the untraced time per operation divided by the traced one, for
/// loop size `size`, from a bench log's `SIZE untraced|traced ops=N ... secs=S` lines (each
/// traced line paired with the untraced line before it).
fn bench_ratio(log: &str, size: &str) -> Option<f64> {
    let per_op = |line: &str| -> Option<f64> {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let ops = field("ops=")?;
        (ops > 0.0).then_some(field("secs=")? / ops)
    };
    let mut untraced = None;
    let mut ratios = Vec::new();
    for line in log.lines() {
        let mut words = line.splitn(3, ' ');
        if words.next() != Some(size) {
            continue;
        }
        match (words.next(), words.next()) {
            (Some("untraced"), Some(rest)) => untraced = per_op(rest),
            (Some("traced"), Some(rest)) => {
                if let (Some(base), Some(traced)) = (untraced.take(), per_op(rest)) {
                    ratios.push(base / traced);
                }
            }
            _ => {}
        }
    }
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    Some(ratios[ratios.len() / 2])
}

/// The table, its footnotes, timings, and the tails of failing logs.
pub(super) fn report(rows: &[Row], backends: &[&str], total: Duration) -> String {
    let mut notes: Vec<String> = Vec::new();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["kernel".to_string()];
    header.extend(backends.iter().map(ToString::to_string));
    header.extend(["BTF", "boot", "wall"].map(String::from));
    table.push(header);
    for row in rows {
        let mut line = vec![row.title()];
        for (backend, cell, _) in &row.cells {
            let mut text = cell.text();
            if let Some(note) = cell.footnote() {
                notes.push(format!("{} {backend}: {note}", row.label));
                let _ = write!(text, " [{}]", notes.len());
            }
            line.push(text);
        }
        if row.cells.is_empty() {
            line.extend(backends.iter().map(|_| "-".to_string()));
        }
        line.push(match row.btf {
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
            None => "?".into(),
        });
        line.push(row.boot.map_or("-".into(), duration));
        line.push(row.wall.map_or("-".into(), duration));
        if let Some(problem) = &row.problem {
            notes.push(format!("{}: {problem}", row.label));
            let last = line.len() - 1;
            let _ = write!(line[last], " [{}]", notes.len());
        }
        table.push(line);
    }
    let mut out = String::from("\n");
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    let _ = writeln!(out, "total wall time {}", duration(total));
    for (i, note) in notes.iter().enumerate() {
        let _ = writeln!(out, "[{}] {note}", i + 1);
    }
    write_timings(&mut out, rows);
    write_failures(&mut out, rows);
    out
}

/// Each kernel's boot and per-backend test times.
fn write_timings(out: &mut String, rows: &[Row]) {
    let _ = writeln!(out, "\ntimes:");
    for row in rows {
        let mut parts = Vec::new();
        if let Some(boot) = row.boot {
            parts.push(format!("boot {}", duration(boot)));
        }
        for (backend, _, time) in &row.cells {
            if let Some(t) = time {
                parts.push(format!("{backend} tests {}", duration(*t)));
            }
        }
        if let Some(wall) = row.wall {
            parts.push(format!("wall {}", duration(wall)));
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "  {}: {}", row.label, parts.join(", "));
        }
    }
}

/// Failing tests, and the end of each failing log.
fn write_failures(out: &mut String, rows: &[Row]) {
    for row in rows.iter().filter(|r| r.failed()) {
        let _ = writeln!(
            out,
            "\n{} failed; its logs are in {}",
            row.title(),
            row.dir.display()
        );
        for (backend, cell, _) in &row.cells {
            if let Cell::Fail { failed, log, .. } = cell {
                if !failed.is_empty() {
                    let _ = writeln!(out, "  {backend}: failing tests: {}", failed.join(", "));
                }
                let _ = writeln!(out, "  {backend}: {}, last lines:", log.display());
                out.push_str(&tail(log));
            }
        }
        let unexplained = row
            .cells
            .iter()
            .any(|(_, c, _)| matches!(c, Cell::Missing(_)));
        if let Some(log) = row
            .log
            .as_ref()
            .filter(|_| row.problem.is_some() || unexplained)
        {
            let _ = writeln!(out, "  {}, last lines:", log.display());
            out.push_str(&tail(log));
        }
    }
}

/// The last lines of a log, indented.
fn tail(path: &Path) -> String {
    let text = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
        let _ = writeln!(out, "    | {}", line.trim_end());
    }
    out
}

/// `12.3 s`, or `4 min 05 s`.
pub(super) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bench_ratio_pairs_rounds() {
        let log = "64 untraced ops=100 bytes=1 secs=1.0\n64 traced ops=50 bytes=1 secs=1.0\n\
                   64 untraced ops=100 bytes=1 secs=1.0\n64 traced ops=80 bytes=1 secs=1.0\n\
                   64 untraced ops=100 bytes=1 secs=1.0\n64 traced ops=60 bytes=1 secs=1.0\n\
                   4096 untraced ops=10 bytes=1 secs=1.0\n4096 traced ops= bytes=1 secs=1.0\n";
        assert_eq!(super::bench_ratio(log, "64"), Some(0.6));
        assert_eq!(super::bench_ratio(log, "4096"), None);
        assert_eq!(super::bench_ratio(log, "8"), None);
    }

    use super::*;

    #[test]
    fn libtest_output_makes_cells() {
        let log = PathBuf::from("log");
        let ok = "test a ... ok\ntest b ... ok\n\ntest result: ok. 2 passed; 0 failed;\n";
        assert!(matches!(
            test_cell(ok, Some("0"), log.clone()),
            Cell::Pass { passed: 2 }
        ));
        let bad = "test a ... ok\ntest b ... FAILED\n\ntest result: FAILED. 1 passed; 1 failed;\n";
        let Cell::Fail {
            passed,
            total,
            failed,
            ..
        } = test_cell(bad, Some("101"), log.clone())
        else {
            panic!("not a failure");
        };
        assert_eq!((passed, total, failed), (1, 2, vec!["b".to_string()]));
        let Cell::Fail { passed, total, .. } =
            test_cell("running 13 tests\ntest a ... ok\n", None, log)
        else {
            panic!("a run cut short passed");
        };
        assert_eq!((passed, total), (1, 13));
    }

    #[test]
    fn guests_of_one_kernel_make_one_row() {
        let part =
            |dir: &str, cells: Vec<(&'static str, Cell)>, wall: u64, problem: Option<&str>| Row {
                label: "5.10".into(),
                host: false,
                release: Some("5.10.0-32-amd64".into()),
                btf: Some(true),
                cells: cells.into_iter().map(|(b, c)| (b, c, None)).collect(),
                boot: Some(Duration::from_secs(wall / 100)),
                wall: Some(Duration::from_secs(wall)),
                problem: problem.map(String::from),
                dir: PathBuf::from(dir),
                log: Some(PathBuf::from(format!("{dir}/console.log"))),
            };
        let rest = part(
            "vm/5.10",
            vec![
                ("kprobe", Cell::Pass { passed: 20 }),
                ("tracepoint", Cell::Unsupported("6.3+".into())),
            ],
            500,
            None,
        );
        let fentry = part(
            "vm/5.10-fentry",
            vec![("fentry", Cell::Pass { passed: 20 })],
            1100,
            Some("timed out"),
        );
        let row = Row::merge(vec![rest, fentry], &BACKENDS).unwrap();
        let order: Vec<&str> = row.cells.iter().map(|(b, _, _)| *b).collect();
        assert_eq!(order, BACKENDS);
        assert!(matches!(row.cells[0].1, Cell::Pass { passed: 20 }));
        assert_eq!(row.wall, Some(Duration::from_secs(1100)));
        assert_eq!(row.boot, Some(Duration::from_secs(5)));
        assert_eq!(row.problem.as_deref(), Some("guest 5.10-fentry: timed out"));
        assert_eq!(row.log, Some(PathBuf::from("vm/5.10-fentry/console.log")));
        assert!(row.failed());
        let alone = part(
            "vm/6.1",
            vec![("kprobe", Cell::Pass { passed: 1 })],
            9,
            None,
        );
        let row = Row::merge(vec![alone], &BACKENDS).unwrap();
        assert!(matches!(row.cells[0].1, Cell::Missing(_)));
        // A backend the kernel supported, now unsupported, fails the row; others stay.
        let lost = part(
            "vm/6.1",
            vec![
                ("fentry", Cell::Unsupported("no function in its BTF".into())),
                ("kprobe", Cell::Pass { passed: 20 }),
                ("tracepoint", Cell::Unsupported("6.3+".into())),
            ],
            9,
            None,
        );
        assert!(!lost.failed());
        let row = lost.expecting(&["fentry", "kprobe"]);
        assert!(
            matches!(&row.cells[0].1, Cell::Error(why) if why.ends_with("no function in its BTF"))
        );
        assert!(matches!(row.cells[2].1, Cell::Unsupported(_)));
        assert!(row.failed());
        assert!(Row::merge(Vec::new(), &BACKENDS).is_none());
    }

    #[test]
    fn backend_statuses_decide_what_runs() {
        let listed: Statuses = Ok(HashMap::from([
            ("kprobe".to_string(), ("ok".to_string(), String::new())),
            (
                "fentry".to_string(),
                ("error".to_string(), "EINVAL".to_string()),
            ),
            (
                "tracepoint".to_string(),
                ("unsupported".to_string(), "6.3+".to_string()),
            ),
        ]));
        assert!(verdict("kprobe", Some(&listed)).is_ok());
        assert!(matches!(verdict("fentry", Some(&listed)), Err(Cell::Error(d)) if d == "EINVAL"));
        assert!(matches!(
            verdict("tracepoint", Some(&listed)),
            Err(Cell::Unsupported(_))
        ));
        let unavailable: Statuses = Err("no backends subcommand".into());
        assert!(verdict("tracepoint", Some(&unavailable)).is_ok());
        assert!(matches!(
            verdict("kprobe", Some(&unavailable)),
            Err(Cell::Skipped(_))
        ));
        assert!(matches!(verdict("kprobe", None), Err(Cell::Missing(_))));
    }
}
