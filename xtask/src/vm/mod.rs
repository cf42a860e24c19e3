//! `cargo xtask vm-test`: the capture integration tests on several Linux kernels.
//!
//! Debian kernels (5.10 from bullseye, 6.1 from bookworm, 6.12 from bookworm-backports) are
//! fetched with apt into /var/cache/udstrace-vm, never installed, and booted under QEMU
//! (software emulation) with a small initramfs: busybox, the modules that mount 9p over virtio,
//! and an init that mounts the host's root read-only as its own root and runs a job there. The
//! job asks `udstrace backends` what the kernel supports and runs the capture test binary once
//! per supported backend. The host runs the same job natively. A kernel x backend table ends it.
//! docs/VM.md tells how it works and what it costs.

mod debian;
mod guest;
mod initramfs;
mod report;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use crate::util::{cargo, require_root, root, sh, show};

use self::{
    debian::{fetch_kernel, Kernel, KernelSpec, KERNELS},
    guest::{run_guest, run_host},
    report::Row,
};

/// The attach backends, in the table's column order.
const BACKENDS: [&str; 3] = ["fentry", "kprobe", "tracepoint"];
/// The backend tried when `udstrace backends` is not available.
const FALLBACK_BACKEND: &str = "tracepoint";
/// Prefix of the progress lines the job prints.
const MARK: &str = "udstrace-vm: ";

/// `cargo xtask vm-test` options.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// Only this kernel (repeatable); default: 5.10, 6.1 and 6.12 (`sid`, Debian unstable's
    /// newest kernel, and the arm64 ones only when named).
    #[arg(long = "kernel", value_name = "VERSION", value_parser = [
        "5.10", "6.1", "6.12", "sid", "arm64-5.10", "arm64-6.1", "arm64-6.12",
    ])]
    kernels: Vec<String>,
    /// Every kernel of this architecture (Debian's name), with the kernels named by
    /// `--kernel`: `arm64` boots them under qemu-system-aarch64 with a cross-built udstrace.
    #[arg(long, value_name = "ARCH", value_parser = ["amd64", "arm64"])]
    arch: Option<String>,
    /// Only this backend's column.
    #[arg(long, value_name = "NAME", value_parser = ["fentry", "kprobe", "tracepoint"])]
    backend: Option<String>,
    /// Only the capture tests whose names contain this (a libtest filter).
    #[arg(long = "test", value_name = "NAME")]
    test: Option<String>,
    /// Leave out the capture tests whose names contain this (libtest's `--skip`; repeatable).
    #[arg(long = "skip", value_name = "NAME")]
    skip: Vec<String>,
    /// Skip the host kernel's row.
    #[arg(long)]
    no_host: bool,
    /// Seconds each guest may take (a guest's boot included) before it is killed and
    /// counted as failed: sid's row, the slowest, took 14 min.
    #[arg(long, value_name = "SECS", default_value_t = 2000)]
    timeout: u64,
    /// Test the debug build of udstrace (overflow checks on) instead of the release build;
    /// about three times slower in a guest.
    #[arg(long)]
    debug: bool,
    /// Guests run at the same time (each takes about one host CPU); default: one per host CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    jobs: Option<u16>,
    /// Instead of the capture tests, measure what each backend costs a sender in the guest:
    /// a one-thread write+read loop (64 B and 4 KiB), untraced and with the backend capturing
    /// every byte to /dev/null, 3 rounds; ratios against untraced in the same guest (an
    /// emulated machine's absolute times mean nothing). x86_64 kernels only.
    #[arg(long, conflicts_with_all = ["test", "skip", "arch"])]
    bench: bool,
}

impl Default for Options {
    /// Every kernel, every backend, every test, the host row: what `cargo xtask test` runs.
    fn default() -> Self {
        Self {
            kernels: Vec::new(),
            arch: None,
            backend: None,
            test: None,
            skip: Vec::new(),
            no_host: false,
            timeout: 2000,
            debug: false,
            jobs: None,
            bench: false,
        }
    }
}

pub(crate) fn run(opts: &Options) -> Result<()> {
    require_root("cargo xtask vm-test")?;
    let started = Instant::now();
    let specs: Vec<&KernelSpec> = KERNELS
        .iter()
        .filter(|k| {
            if opts.kernels.is_empty() && opts.arch.is_none() {
                k.default
            } else {
                opts.kernels.iter().any(|n| n == k.name) || opts.arch.as_deref() == Some(k.arch)
            }
        })
        .collect();
    let foreign = specs.iter().any(|k| k.arch != "amd64");
    let job = Job {
        artifacts: build(opts.debug, None)?,
        backends: match &opts.backend {
            Some(b) => BACKENDS.iter().copied().filter(|n| n == b).collect(),
            None => BACKENDS.to_vec(),
        },
        filter: opts.test.clone(),
        skip: opts.skip.clone(),
        foreign: None,
        bench: if opts.bench {
            Some(build_load(opts.debug)?)
        } else {
            None
        },
    };
    ensure!(
        !(opts.bench && foreign),
        "--bench runs on x86_64 kernels only (the workload is a host binary)"
    );
    let arm64 = if foreign {
        Some(build(opts.debug, Some(crate::cross::target("arm64")?))?)
    } else {
        None
    };
    let kernels: Vec<(&KernelSpec, Result<Kernel>)> =
        specs.into_iter().map(|s| (s, fetch_kernel(s))).collect();
    let out = root().join("target/vm");
    let timeout = Duration::from_secs(opts.timeout);
    let mut rows = Vec::new();
    if !opts.no_host {
        let dir = out.join("host");
        rows.push(run_host(&job, &dir, timeout).unwrap_or_else(|e| Row::broken("host", &dir, &e)));
    }
    rows.extend(run_guests(
        &job,
        arm64.as_ref(),
        kernels,
        &out,
        timeout,
        opts.jobs.map_or_else(
            || thread::available_parallelism().map_or(1, std::num::NonZero::get),
            usize::from,
        ),
    ));
    if opts.bench {
        return report::bench(&out, started.elapsed());
    }
    print!(
        "{}",
        report::report(&rows, &job.backends, started.elapsed())
    );
    let failed = rows.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        bail!("vm-test failed on {failed} of {} kernels", rows.len());
    }
    Ok(())
}

/// Every kernel's guests, `jobs` at a time, the slowest first; one row per kernel, in
/// `kernels` order. A kernel's `apart` backends run in guests of their own, at the same time as
/// the guest that runs its other backends; their results make one row.
fn run_guests(
    job: &Job,
    arm64: Option<&Artifacts>,
    kernels: Vec<(&KernelSpec, Result<Kernel>)>,
    out: &Path,
    timeout: Duration,
    jobs: usize,
) -> Vec<Row> {
    let count = kernels.len();
    let supported: Vec<&'static [&'static str]> =
        kernels.iter().map(|(spec, _)| spec.supported).collect();
    let mut parts = Vec::new();
    for (i, (spec, kernel)) in kernels.into_iter().enumerate() {
        let kernel = kernel.map_err(|e| format!("{e:#}"));
        for (part, backends) in guest_parts(spec, &job.backends).into_iter().enumerate() {
            let dir = if part == 0 {
                out.join(spec.name)
            } else {
                out.join(format!("{}-{}", spec.name, backends.join("-")))
            };
            let part_job = match (spec.arch, arm64) {
                ("arm64", Some(artifacts)) => Job {
                    backends,
                    artifacts: artifacts.clone(),
                    foreign: Some(FOREIGN_ARM64),
                    ..job.clone()
                },
                _ => Job {
                    backends,
                    ..job.clone()
                },
            };
            parts.push((i, spec, kernel.clone(), part_job, dir, part));
        }
    }
    // Popped from the end: the slowest guest first, so that it runs on one worker while the
    // others share the rest.
    parts.sort_by_key(|(_, spec, _, _, _, part)| (slowness(spec.name), *part > 0));
    let work = parts.len();
    let queue = Mutex::new(parts);
    let rows = Mutex::new(Vec::with_capacity(work));
    thread::scope(|scope| {
        for _ in 0..jobs.min(work) {
            scope.spawn(|| {
                while let Some((i, spec, kernel, part_job, dir, _)) =
                    queue.lock().ok().and_then(|mut q| q.pop())
                {
                    let row = kernel
                        .map_err(|e| anyhow::anyhow!("cannot fetch the kernel: {e}"))
                        .and_then(|k| run_guest(&part_job, &k, &dir, timeout))
                        .unwrap_or_else(|e| Row::broken(spec.name, &dir, &e));
                    if let Ok(mut rows) = rows.lock() {
                        rows.push((i, row));
                    }
                }
            });
        }
    });
    let mut rows = rows.into_inner().unwrap_or_default();
    rows.sort_by_key(|(i, _)| *i);
    let mut merged: Vec<Vec<Row>> = (0..count).map(|_| Vec::new()).collect();
    for (i, row) in rows {
        merged[i].push(row);
    }
    merged
        .into_iter()
        .zip(supported)
        .filter_map(|(parts, supported)| {
            Row::merge(parts, &job.backends).map(|row| row.expecting(supported))
        })
        .collect()
}

/// The backends of each guest a kernel boots: the rest of `backends` first (it also runs when
/// all are apart, to keep one guest per kernel at least), then each apart one alone.
fn guest_parts(spec: &KernelSpec, backends: &[&'static str]) -> Vec<Vec<&'static str>> {
    let (apart, rest): (Vec<&'static str>, Vec<&'static str>) =
        backends.iter().partition(|b| spec.apart.contains(b));
    if rest.is_empty() {
        // Nothing shares: one guest per backend, the first standing for the kernel.
        return apart.into_iter().map(|b| vec![b]).collect();
    }
    std::iter::once(rest)
        .chain(apart.into_iter().map(|b| vec![b]))
        .collect()
}

/// Rank of a guest's measured wall time (docs/VM.md), the slowest first to start: the
/// longest guests on one worker while the short ones fill the other.
fn slowness(kernel: &str) -> u8 {
    // Measured wall times: sid 14 min, 6.12 8, 6.1 7.5, 5.10 5 + 4 (two guests), arm64-6.12
    // 3, arm64-5.10 2.5, arm64-6.1 1.5.
    match kernel {
        "sid" => 8,
        "6.12" => 7,
        "6.1" => 6,
        "5.10" => 5,
        "arm64-6.12" => 4,
        "arm64-5.10" => 3,
        "arm64-6.1" => 2,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// What runs: the binaries and the job script.

/// The binaries under test, built on the host.
#[derive(Clone)]
struct Artifacts {
    udstrace: PathBuf,
    capture_tests: PathBuf,
}

/// Builds udstrace (release, unless `debug`) and the capture test binary.
///
/// The release build by default: under emulation most of the tests' time goes to starting
/// udstrace (reading the kernel's BTF), which the debug build does five times slower; the
/// capture tests took 205 s with the debug build and 67 s with the release one in a 6.12 guest.
/// `cross`: for another architecture (`cargo xtask cross`), else for the host.
fn build(debug: bool, cross: Option<&crate::cross::Target>) -> Result<Artifacts> {
    let profile = if debug { "debug" } else { "release" };
    let udstrace = if let Some(target) = cross {
        crate::cross::build(target, debug)?
    } else {
        let mut build = cargo();
        build.args(["build", "-p", "udstrace"]);
        if !debug {
            build.arg("--release");
        }
        sh(&mut build)?;
        root().join("target").join(profile).join("udstrace")
    };
    let mut cmd = cargo();
    if let Some(target) = cross {
        cmd.args(["test", "--target", target.triple]);
    } else {
        cmd.arg("test");
    }
    cmd.args([
        "-p",
        "udstrace-tests",
        "--test",
        "capture",
        "--no-run",
        "--message-format=json",
    ])
    .stderr(Stdio::inherit());
    eprintln!("+ {}", show(&cmd));
    let out = cmd.output().with_context(|| show(&cmd))?;
    ensure!(
        out.status.success(),
        "{} failed ({})",
        show(&cmd),
        out.status
    );
    let capture_tests = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.contains(r#""reason":"compiler-artifact""#)
                && l.contains(r#""kind":["test"]"#)
                && l.contains(r#""name":"capture""#)
        })
        .find_map(|l| json_string(l, "executable"))
        .context("cargo named no executable for the capture tests")?;
    ensure!(udstrace.exists(), "{} was not built", udstrace.display());
    Ok(Artifacts {
        udstrace,
        capture_tests: PathBuf::from(capture_tests),
    })
}

/// The string value of `"key":"..."` in one line of JSON; None if absent or not a plain string.
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = line[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                c @ ('"' | '\\' | '/') => value.push(c),
                _ => return None,
            },
            c => value.push(c),
        }
    }
}

/// What every kernel runs.
#[derive(Clone)]
struct Job {
    artifacts: Artifacts,
    /// Backends to test (columns of the table).
    backends: Vec<&'static str>,
    /// libtest filter.
    filter: Option<String>,
    /// libtest `--skip` filters.
    skip: Vec<String>,
    /// For a guest of another architecture than the host's: how its job runs.
    foreign: Option<Foreign>,
    /// `--bench`: the workload binary (`udstrace-load`); the job measures instead of testing.
    bench: Option<PathBuf>,
}

/// How a job runs in a guest whose architecture is not the host's: the host's root has no
/// programs it can run natively, so its init puts the guest's own busybox in front of the
/// host's (`/udstrace-vm/bin` on `PATH`), the cross C library's loader where the binaries look
/// for it, and an x86_64 emulator for the host programs the tests start (initramfs.rs).
#[derive(Clone, Copy)]
struct Foreign {
    /// Where the cross-built binaries' C library is on the host.
    libraries: &'static str,
    /// Its loader's file name (the binaries' `PT_INTERP`, in `/lib`).
    loader: &'static str,
    /// Capture tests left out (libtest `--skip` filters).
    skip: &'static [&'static str],
}

const FOREIGN_ARM64: Foreign = Foreign {
    libraries: "/usr/aarch64-linux-gnu/lib",
    loader: "ld-linux-aarch64.so.1",
    // The tests whose peers are host programs (python3, setpriv) run under two layers of
    // emulation there: one took 190 s. The 9 left send from the test binary itself.
    skip: &[
        "datagrams_seqpackets_and_names",
        "datagram_socket_shared_by_two_readers",
        "named_server_with_several_clients",
        "passed_descriptors_and_credentials",
        "peer_process_is_the_holder",
        "socket_passed_to_another_process",
        "errors_are_one_clear_line",
        "client_sends_before_accept",
        "large_sends_are_complete",
        "partial_writes_record",
        "sequential_connections",
        "stream_socketpair_every_send_call",
    ],
};

impl Job {
    /// The job as a POSIX shell script writing its results to `results`. It prints
    /// `udstrace-vm: ...` progress lines, which the host timestamps.
    fn script(&self, results: &Path) -> String {
        let q = |p: &Path| quote(&p.to_string_lossy());
        let filter = self.filter.as_deref().map(quote).unwrap_or_default();
        let mut s = String::new();
        let _ = writeln!(s, "#!/bin/sh\n# Written by cargo xtask vm-test.\nexec 2>&1");
        let _ = writeln!(s, "R={}", q(results));
        let _ = writeln!(s, "BIN={}", q(&self.artifacts.udstrace));
        let _ = writeln!(s, "TESTS={}", q(&self.artifacts.capture_tests));
        let _ = writeln!(
            s,
            "export HOME=/tmp/udstrace-vm-home PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        );
        let mut skip = String::new();
        if let Some(foreign) = self.foreign {
            let _ = writeln!(
                s,
                "export PATH=/udstrace-vm/bin:$PATH LD_LIBRARY_PATH={}",
                quote(foreign.libraries)
            );
            for test in foreign.skip {
                let _ = write!(skip, " --skip {}", quote(test));
            }
        }
        for test in &self.skip {
            let _ = write!(skip, " --skip {}", quote(test));
        }
        let _ = writeln!(s, "mkdir -p \"$HOME\"");
        // Where cargo runs the tests from.
        let _ = writeln!(s, "cd {} || exit 1", q(&root().join("tests")));
        let _ = writeln!(s, "echo '{MARK}job start'");
        let _ = writeln!(s, "uname -r > \"$R/uname\"");
        let _ = writeln!(
            s,
            "if [ -e /sys/kernel/btf/vmlinux ]; then echo yes; else echo no; fi > \"$R/btf\""
        );
        let _ = writeln!(
            s,
            "\"$BIN\" backends > \"$R/backends.tsv\" 2> \"$R/backends.err\"\necho $? > \"$R/backends.rc\""
        );
        let _ = writeln!(s, "cat \"$R/backends.tsv\" \"$R/backends.err\"");
        let _ = writeln!(s, "for b in {}; do", self.backends.join(" "));
        // Each backend `udstrace backends` calls ok; only the fallback if it cannot say.
        let _ = writeln!(
            s,
            "  if [ \"$(cat \"$R/backends.rc\")\" = 0 ]; then\n    \
               awk -F'\\t' -v b=\"$b\" '$1 == b && $2 == \"ok\" {{ ok = 1 }} END {{ exit !ok }}' \"$R/backends.tsv\" || continue\n  \
             else\n    [ \"$b\" = {FALLBACK_BACKEND} ] || continue\n  fi"
        );
        if let Some(load) = &self.bench {
            let _ = writeln!(s, "  echo \"{MARK}bench $b start\"");
            let _ = writeln!(s, "{}", bench_script(&q(load)));
            let _ = writeln!(s, "  echo \"{MARK}bench $b end\"");
        } else {
            let _ = writeln!(s, "  echo \"{MARK}test $b start\"");
            let _ = writeln!(
                s,
                "  UDSTRACE_BIN=\"$BIN\" UDSTRACE_BACKEND=$b \"$TESTS\" --test-threads=1 {filter}{skip} > \"$R/test-$b.log\" 2>&1"
            );
            let _ = writeln!(s, "  echo \"{MARK}test $b end $?\"");
        }
        let _ = writeln!(s, "done\necho '{MARK}job end'");
        s
    }
}

/// The part of a `--bench` job that measures backend `$b`: for each size, 3 rounds of the
/// loop untraced then traced, one `SIZE untraced|traced <udstrace-load output>` line each, in
/// `$R/bench-$b.log`.
fn bench_script(load: &str) -> String {
    format!(
        "  : > \"$R/bench-$b.log\"
  for size in 64 4096; do for round in 1 2 3; do
    echo \"$size untraced $({load} loop $size 2)\" >> \"$R/bench-$b.log\"
    \"$BIN\" --backend \"$b\" -w /dev/null > /dev/null 2> \"$R/bench-$b.err\" &
    P=$!; n=0
    while ! grep -q listening \"$R/bench-$b.err\" && [ $n -lt 1200 ]; do sleep 0.1; n=$((n + 1)); done
    echo \"$size traced $({load} loop $size 2)\" >> \"$R/bench-$b.log\"
    kill -INT $P; wait $P
  done; done"
    )
}

/// Builds the workload `--bench` runs (`udstrace-load`, release unless `debug`).
fn build_load(debug: bool) -> Result<PathBuf> {
    let mut build = cargo();
    build.args(["build", "-p", "udstrace-tests", "--bin", "udstrace-load"]);
    if !debug {
        build.arg("--release");
    }
    sh(&mut build)?;
    let load = root()
        .join("target")
        .join(if debug { "debug" } else { "release" })
        .join("udstrace-load");
    ensure!(load.exists(), "{} was not built", load.display());
    Ok(load)
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn json_string_reads_a_field() {
        let line = r#"{"reason":"compiler-artifact","executable":"/a/b\/c\"d","fresh":true}"#;
        assert_eq!(
            json_string(line, "executable").as_deref(),
            Some("/a/b/c\"d")
        );
        assert_eq!(json_string(line, "missing"), None);
        assert_eq!(json_string(r#"{"executable":null}"#, "executable"), None);
    }

    #[test]
    fn apart_backends_get_guests_of_their_own() {
        let spec = |apart| KernelSpec {
            name: "x",
            arch: "amd64",
            suite: "s",
            apart,
            supported: &[],
            default: true,
            version: None,
        };
        assert_eq!(
            guest_parts(&spec(&["fentry"]), &BACKENDS),
            vec![vec!["kprobe", "tracepoint"], vec!["fentry"]]
        );
        assert_eq!(guest_parts(&spec(&[]), &BACKENDS), vec![BACKENDS.to_vec()]);
        assert_eq!(
            guest_parts(&spec(&["fentry"]), &["fentry"]),
            vec![vec!["fentry"]]
        );
    }

    #[test]
    fn the_job_script_is_valid_shell() {
        let job = Job {
            artifacts: Artifacts {
                udstrace: PathBuf::from("/x/udstrace"),
                capture_tests: PathBuf::from("/x/it's"),
            },
            backends: BACKENDS.to_vec(),
            filter: Some("stream".into()),
            skip: vec!["large".into()],
            foreign: Some(FOREIGN_ARM64),
            bench: None,
        };
        let script = job.script(Path::new("/tmp/results"));
        let status = Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(script.contains(r"TESTS='/x/it'\''s'"));
        let bench = Job {
            bench: Some(PathBuf::from("/x/load")),
            ..job
        }
        .script(Path::new("/tmp/results"));
        let status = Command::new("sh")
            .args(["-n", "-c", &bench])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(bench.contains("'/x/load' loop $size 2") && !bench.contains("$TESTS\" --"));
    }
}
