//! Running the job: natively on the host, or in a QEMU guest, under supervision.

use std::{
    fs,
    io::{BufRead, BufReader, Write as _},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};

use super::{
    debian::{busybox, package_file, Kernel},
    initramfs::{initramfs, ForeignRoot},
    report::{duration, Row},
    Job, MARK,
};
use crate::util::show;

/// Empties a kernel's results directory and writes its job script there.
fn prepare(job: &Job, dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let script = dir.join("job.sh");
    fs::write(&script, job.script(dir)).with_context(|| script.display().to_string())?;
    Ok(script)
}

/// The job on the host's own kernel.
pub(super) fn run_host(job: &Job, dir: &Path, timeout: Duration) -> Result<Row> {
    let script = prepare(job, dir)?;
    let mut cmd = Command::new("sh");
    cmd.arg(&script);
    let log = dir.join("job.log");
    let run = supervise(cmd, &log, timeout, "host")?;
    Ok(Row::collect("host", true, dir, &log, &run, job, None))
}

/// The job in a QEMU guest booting `kernel`.
pub(super) fn run_guest(job: &Job, kernel: &Kernel, dir: &Path, timeout: Duration) -> Result<Row> {
    let script = prepare(job, dir)?;
    let initrd = dir.join("initrd.cpio");
    let bytes = match job.foreign {
        Some(f) => {
            let loader = format!("{}/{}", f.libraries, f.loader);
            let emulator = package_file(
                kernel.arch,
                "qemu-user-static",
                "usr/bin/qemu-x86_64-static",
            )?;
            let root = ForeignRoot {
                loader: &loader,
                emulator: &emulator,
            };
            initramfs(kernel, &busybox(kernel.arch)?, Some(&root))?
        }
        None => initramfs(kernel, &busybox(kernel.arch)?, None)?,
    };
    fs::write(&initrd, bytes).with_context(|| initrd.display().to_string())?;
    let console = dir.join("console.log");
    // Progress lines name the guest (`5.10-fentry`) when a kernel has several.
    let guest = dir.file_name().map_or_else(
        || kernel.name.to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let run = supervise(
        qemu(kernel, &initrd, dir, &script)?,
        &console,
        timeout,
        &guest,
    )?;
    Ok(Row::collect(
        kernel.name,
        false,
        dir,
        &console,
        &run,
        job,
        Some(&kernel.release),
    ))
}

/// The QEMU command line of a guest: software emulation (KVM is not usable here), the host's
/// root shared read-only and `results` writable.
///
/// Two vCPUs on one host thread (`thread=single`): the guest is still SMP, and the capture
/// tests ran in 67 s this way against 101 s with a host thread per vCPU (whose cross-CPU
/// synchronisation costs more than the second thread gives), and two such guests share two
/// host CPUs well.
fn qemu(kernel: &Kernel, initrd: &Path, results: &Path, script: &Path) -> Result<Command> {
    for p in [results, script] {
        ensure!(
            !p.to_string_lossy().contains(char::is_whitespace),
            "{} has white space: it cannot go on a kernel command line",
            p.display()
        );
    }
    // QEMU's option syntax doubles commas inside values.
    let escape = |p: &Path| p.to_string_lossy().replace(',', ",,");
    // arm64: the `virt` board; QEMU boots Debian's vmlinuz (a gzip'd Image) itself.
    // `pauth-impdef`: QEMU's own pointer authentication, much cheaper to emulate.
    let (qemu, machine, cpu, console) = match kernel.arch {
        "arm64" => (
            "qemu-system-aarch64",
            "virt",
            "max,pauth-impdef=on",
            "ttyAMA0",
        ),
        _ => ("qemu-system-x86_64", "pc", "max", "ttyS0"),
    };
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-M",
        machine,
        "-accel",
        "tcg,thread=single",
        "-cpu",
        cpu,
        "-smp",
        "2",
        "-m",
        "2G",
    ])
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(&kernel.vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(format!(
        "console={console} panic=-1 vmjob={} vmresults={}",
        script.display(),
        results.display()
    ))
    .arg("-virtfs")
    .arg("local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
    .arg("-virtfs")
    .arg(format!(
        "local,path={},mount_tag=results,security_model=none",
        escape(results)
    ));
    Ok(cmd)
}

/// How a supervised run went.
pub(super) struct Supervised {
    /// The job's progress lines (without the `udstrace-vm: ` prefix), with when they came.
    marks: Vec<(Duration, String)>,
    pub(super) elapsed: Duration,
    pub(super) timed_out: bool,
}

impl Supervised {
    /// When the first progress line starting with `prefix` came, and its rest.
    pub(super) fn mark(&self, prefix: &str) -> Option<(Duration, &str)> {
        self.marks
            .iter()
            .find_map(|(at, m)| Some((*at, m.strip_prefix(prefix)?)))
    }
}

/// Runs `cmd` (in a process group of its own) with its output going to `log`, echoing the
/// job's progress lines, and kills the group after `timeout`.
fn supervise(mut cmd: Command, log: &Path, timeout: Duration, label: &str) -> Result<Supervised> {
    let file = fs::File::create(log).with_context(|| log.display().to_string())?;
    eprintln!("+ {} > {}", show(&cmd), log.display());
    let started = Instant::now();
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file.try_clone()?)
        .spawn()
        .with_context(|| format!("cannot run {}", show(&cmd)))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    let copier = thread::spawn(move || copy_output(stdout, file, started, &tx));
    let mut marks = Vec::new();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok((at, mark)) => {
                eprintln!("[{label} {:>7.1} s] {mark}", at.as_secs_f64());
                marks.push((at, mark));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                eprintln!(
                    "[{label}] timed out after {}: killing it",
                    duration(timeout)
                );
                // SAFETY: kill(2) on the process group this function started.
                unsafe { libc::kill(-i32::try_from(child.id())?, libc::SIGKILL) };
                break;
            }
        }
    }
    child.wait()?;
    let _ = copier.join();
    Ok(Supervised {
        marks,
        elapsed: started.elapsed(),
        timed_out,
    })
}

/// Copies a job's output to its log, sending its progress lines with when they came.
fn copy_output(
    from: impl std::io::Read,
    mut to: fs::File,
    started: Instant,
    marks: &mpsc::Sender<(Duration, String)>,
) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let _ = to.write_all(&line);
        let text = String::from_utf8_lossy(&line);
        if let Some(at) = text.find(MARK) {
            let mark = text[at + MARK.len()..].trim().to_string();
            let _ = marks.send((started.elapsed(), mark));
        }
        line.clear();
    }
}
