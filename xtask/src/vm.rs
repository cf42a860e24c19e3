//! `cargo xtask vm-test`: the capture integration tests on several Linux kernels.
//!
//! Debian kernels (5.10 from bullseye, 6.1 from bookworm, 6.12 from bookworm-backports) are
//! fetched with apt into /var/cache/udstrace-vm, never installed, and booted under QEMU
//! (software emulation) with a small initramfs: busybox, the modules that mount 9p over virtio,
//! and an init that mounts the host's root read-only as its own root and runs a job there. The
//! job asks `udstrace backends` what the kernel supports and runs the capture test binary once
//! per supported backend. The host runs the same job natively. A kernel x backend table ends it.
//! docs/VM.md tells how it works and what it costs.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader, Write as _},
    os::unix::{io::AsRawFd, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

use crate::util::{cargo, output, require_root, root, sh, show};

/// Downloaded packages and extracted kernels, outside the repository so that fresh clones
/// reuse them.
const CACHE: &str = "/var/cache/udstrace-vm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Debian 12's archive keyring, which also holds the bullseye keys.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The attach backends, in the table's column order.
const BACKENDS: [&str; 3] = ["fentry", "kprobe", "tracepoint"];
/// The backend tried when `udstrace backends` is not available.
const FALLBACK_BACKEND: &str = "tracepoint";
/// Prefix of the progress lines the job prints.
const MARK: &str = "udstrace-vm: ";
/// Kernel modules that mount a 9p share over virtio and an overlay on it, and `unix_diag`
/// (sock_diag for Unix sockets, which udstrace reads: an installed system loads it on demand
/// through modprobe, which the guest lacks); their dependencies are added.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay", "unix_diag"];
/// The largest 9p message size every kernel here accepts over virtio (5.10's limit).
const MSIZE: u32 = 512_000;
/// Lines of a failing log shown in the report.
const TAIL_LINES: usize = 30;

/// A Debian kernel to test on.
struct KernelSpec {
    /// Major.minor, as `--kernel` names it.
    name: &'static str,
    /// The Debian suite whose `linux-image-amd64` depends on it.
    suite: &'static str,
}

const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "5.10",
        suite: "bullseye",
    },
    KernelSpec {
        name: "6.1",
        suite: "bookworm",
    },
    KernelSpec {
        name: "6.12",
        suite: "bookworm-backports",
    },
];

/// Init of the guests: mounts the host's root (9p, read-only) under a writable overlay whose
/// changes stay in the guest's memory, adds the kernel's file systems, runs the job named on
/// the kernel command line there, and powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
stop() { echo "udstrace-vm: init failed: $*"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do insmod "/modules/$m.ko" || stop "insmod $m"; done
job=; results=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vmjob=*) job=${arg#vmjob=} ;;
    vmresults=*) results=${arg#vmresults=} ;;
  esac
done
[ -n "$job" ] && [ -n "$results" ] || stop "no vmjob= or vmresults= on the kernel command line"
ip link set lo up || stop "ip link set lo up"
opts=trans=virtio,version=9p2000.L,msize=@MSIZE@
mount -t 9p -o "$opts,ro,cache=loose" hostroot /lower || stop "mount hostroot"
mount -t tmpfs tmpfs /rw && mkdir /rw/upper /rw/work || stop "tmpfs on /rw"
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
  || stop "overlay"
mount -t proc proc /newroot/proc || stop "proc"
mount -t sysfs sysfs /newroot/sys || stop "sysfs"
mount -t devtmpfs devtmpfs /newroot/dev || stop "devtmpfs"
mount -t bpf bpf /newroot/sys/fs/bpf || stop "bpffs"
mount -t tracefs tracefs /newroot/sys/kernel/tracing || stop "tracefs"
mount -t debugfs debugfs /newroot/sys/kernel/debug || stop "debugfs"
mount -t 9p -o "$opts" results "/newroot$results" || stop "mount results"
chroot /newroot /bin/sh "$job"
echo "udstrace-vm: job exited with $?"
sync
umount "/newroot$results"
poweroff -f
"#;

/// `cargo xtask vm-test` options.
#[derive(clap::Args)]
pub struct Options {
    /// Only this kernel (repeatable); default: all of them.
    #[arg(long = "kernel", value_name = "VERSION", value_parser = ["5.10", "6.1", "6.12"])]
    kernels: Vec<String>,
    /// Only this backend's column.
    #[arg(long, value_name = "NAME", value_parser = ["fentry", "kprobe", "tracepoint"])]
    backend: Option<String>,
    /// Only the capture tests whose names contain this (a libtest filter).
    #[arg(long = "test", value_name = "NAME")]
    test: Option<String>,
    /// Skip the host kernel's row.
    #[arg(long)]
    no_host: bool,
    /// Seconds each kernel's job may take (a guest's boot included) before it is killed and
    /// counted as failed.
    #[arg(long, value_name = "SECS", default_value_t = 1500)]
    timeout: u64,
    /// Test the debug build of udstrace (overflow checks on) instead of the release build;
    /// about three times slower in a guest.
    #[arg(long)]
    debug: bool,
    /// Guests run at the same time (each takes about one host CPU); default: one per host CPU.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    jobs: Option<u16>,
}

impl Default for Options {
    /// Every kernel, every backend, every test, the host row: what `cargo xtask test` runs.
    fn default() -> Self {
        Self {
            kernels: Vec::new(),
            backend: None,
            test: None,
            no_host: false,
            timeout: 1500,
            debug: false,
            jobs: None,
        }
    }
}

pub fn run(opts: &Options) -> Result<()> {
    require_root("cargo xtask vm-test")?;
    let started = Instant::now();
    let job = Job {
        artifacts: build(opts.debug)?,
        backends: match &opts.backend {
            Some(b) => BACKENDS.iter().copied().filter(|n| n == b).collect(),
            None => BACKENDS.to_vec(),
        },
        filter: opts.test.clone(),
    };
    let specs: Vec<&KernelSpec> = KERNELS
        .iter()
        .filter(|k| opts.kernels.is_empty() || opts.kernels.iter().any(|n| n == k.name))
        .collect();
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
        kernels,
        &out,
        timeout,
        opts.jobs.map_or_else(
            || thread::available_parallelism().map_or(1, std::num::NonZero::get),
            usize::from,
        ),
    ));
    print!("{}", report(&rows, &job.backends, started.elapsed()));
    let failed = rows.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        bail!("vm-test failed on {failed} of {} kernels", rows.len());
    }
    Ok(())
}

/// Every kernel's guest, `jobs` at a time, the slowest first; rows come back in `kernels`
/// order.
fn run_guests(
    job: &Job,
    kernels: Vec<(&KernelSpec, Result<Kernel>)>,
    out: &Path,
    timeout: Duration,
    jobs: usize,
) -> Vec<Row> {
    let count = kernels.len();
    // Popped from the end: the slowest guest first, so that it runs on one worker while the
    // others share the rest.
    let mut queue = kernels.into_iter().enumerate().collect::<Vec<_>>();
    queue.sort_by_key(|(_, (spec, _))| slowness(spec.name));
    let queue = Mutex::new(queue);
    let rows = Mutex::new(Vec::with_capacity(count));
    thread::scope(|scope| {
        for _ in 0..jobs.min(count) {
            scope.spawn(|| {
                while let Some((i, (spec, kernel))) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    let dir = out.join(spec.name);
                    let row = kernel
                        .context("cannot fetch the kernel")
                        .and_then(|k| run_guest(job, &k, &dir, timeout))
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
    rows.into_iter().map(|(_, row)| row).collect()
}

/// Rank of a guest's measured wall time (docs/VM.md): 5.10 takes more than twice as long as
/// the others (its verifier walks the fallback copy loops, and its test runs under TCG are
/// the slowest), then 6.12 (three backends), then 6.1.
fn slowness(kernel: &str) -> u8 {
    match kernel {
        "5.10" => 3,
        "6.12" => 2,
        "6.1" => 1,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// What runs: the binaries and the job script.

/// The binaries under test, built on the host.
struct Artifacts {
    udstrace: PathBuf,
    capture_tests: PathBuf,
}

/// Builds udstrace (release, unless `debug`) and the capture test binary.
///
/// The release build by default: under emulation most of the tests' time goes to starting
/// udstrace (reading the kernel's BTF), which the debug build does five times slower; the
/// capture tests took 205 s with the debug build and 67 s with the release one in a 6.12 guest.
fn build(debug: bool) -> Result<Artifacts> {
    let profile = if debug { "debug" } else { "release" };
    let mut build = cargo();
    build.args(["build", "-p", "udstrace"]);
    if !debug {
        build.arg("--release");
    }
    sh(&mut build)?;
    let mut cmd = cargo();
    cmd.args([
        "test",
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
    let udstrace = root().join("target").join(profile).join("udstrace");
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
struct Job {
    artifacts: Artifacts,
    /// Backends to test (columns of the table).
    backends: Vec<&'static str>,
    /// libtest filter.
    filter: Option<String>,
}

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
        let _ = writeln!(s, "  echo \"{MARK}test $b start\"");
        let _ = writeln!(
            s,
            "  UDSTRACE_BIN=\"$BIN\" UDSTRACE_BACKEND=$b \"$TESTS\" --test-threads=1 {filter} > \"$R/test-$b.log\" 2>&1"
        );
        let _ = writeln!(s, "  echo \"{MARK}test $b end $?\"");
        let _ = writeln!(s, "done\necho '{MARK}job end'");
        s
    }
}

/// `s` as one shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------------------------
// Kernels: apt, cached.

/// An extracted Debian kernel.
struct Kernel {
    name: &'static str,
    /// What `uname -r` says.
    release: String,
    vmlinuz: PathBuf,
    /// lib/modules/<release>.
    modules: PathBuf,
}

/// The kernel of `spec` from the cache, downloaded and extracted first if missing.
fn fetch_kernel(spec: &KernelSpec) -> Result<Kernel> {
    let dir = Path::new(CACHE).join("kernels").join(spec.name);
    if let Some(k) = cached_kernel(spec, &dir) {
        return Ok(k);
    }
    let _lock = CacheLock::take()?;
    if let Some(k) = cached_kernel(spec, &dir) {
        return Ok(k);
    }
    let debs = Path::new(CACHE).join("debs").join(spec.name);
    let deb = match find_deb(&debs)? {
        Some(deb) => deb,
        None => download(spec, &debs)?,
    };
    extract(&deb, &dir)?;
    cached_kernel(spec, &dir).with_context(|| format!("{} holds no kernel", deb.display()))
}

/// The kernel extracted in `dir`, if extraction finished there.
fn cached_kernel(spec: &KernelSpec, dir: &Path) -> Option<Kernel> {
    let release = fs::read_to_string(dir.join("release"))
        .ok()?
        .trim()
        .to_string();
    let vmlinuz = dir.join("boot").join(format!("vmlinuz-{release}"));
    let modules = dir.join("lib/modules").join(&release);
    (vmlinuz.exists() && modules.is_dir()).then_some(Kernel {
        name: spec.name,
        release,
        vmlinuz,
        modules,
    })
}

/// The one `.deb` in `dir`, if any.
fn find_deb(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut debs = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            debs.push(path);
        }
    }
    ensure!(
        debs.len() <= 1,
        "{} holds several packages; remove it to download again",
        dir.display()
    );
    Ok(debs.pop())
}

/// Exclusive use of the cache while something is added to it (released on drop).
struct CacheLock {
    _file: fs::File,
}

impl CacheLock {
    fn take() -> Result<Self> {
        fs::create_dir_all(CACHE).with_context(|| format!("cannot create {CACHE}"))?;
        let path = Path::new(CACHE).join("lock");
        let file = fs::File::create(&path).with_context(|| path.display().to_string())?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "cannot lock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Self { _file: file })
    }
}

/// An apt configuration of its own for one suite: the system's sources and state stay
/// untouched.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(suite: &str) -> Result<Self> {
        let dir = Path::new(CACHE).join("apt").join(suite);
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let sources = format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n");
        fs::write(dir.join("sources.list"), sources)
            .with_context(|| dir.join("sources.list").display().to_string())?;
        Ok(Self { dir })
    }

    /// `program` (apt-get, apt-cache) with this configuration.
    fn command(&self, program: &str) -> Command {
        let d = self.dir.display();
        let mut cmd = Command::new(program);
        for option in [
            format!("Dir::Etc::sourcelist={d}/sources.list"),
            "Dir::Etc::sourceparts=-".into(),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::Cache={d}/cache"),
            "Dir::State::status=/dev/null".into(),
            "APT::Sandbox::User=root".into(),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        ] {
            cmd.arg("-o").arg(option);
        }
        cmd
    }

    /// The kernel image package (name, version) the suite's `linux-image-amd64` depends on.
    fn image_package(&self, spec: &KernelSpec) -> Result<(String, String)> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", "--no-all-versions", "linux-image-amd64"]);
        let text = output(&mut cmd).with_context(|| format!("{} failed", show(&cmd)))?;
        let depends = text
            .lines()
            .find_map(|l| l.strip_prefix("Depends: "))
            .context("linux-image-amd64 has no Depends")?;
        let first = depends.split([',', '|']).next().unwrap_or_default().trim();
        let (name, version) = first
            .split_once(" (= ")
            .and_then(|(n, v)| Some((n, v.strip_suffix(')')?)))
            .with_context(|| format!("unexpected dependency of linux-image-amd64: {first}"))?;
        ensure!(
            name.starts_with(&format!("linux-image-{}.", spec.name)),
            "{}'s linux-image-amd64 depends on {name}, not a {} kernel",
            spec.suite,
            spec.name
        );
        Ok((name.to_string(), version.to_string()))
    }
}

/// Downloads the kernel image package of `spec` into `debs`.
fn download(spec: &KernelSpec, debs: &Path) -> Result<PathBuf> {
    let apt = Apt::new(spec.suite)?;
    sh(apt.command("apt-get").args(["-q", "update"]))?;
    let (name, version) = apt.image_package(spec)?;
    fs::create_dir_all(debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let started = Instant::now();
    sh(apt.command("apt-get").current_dir(debs).args([
        "-q",
        "download",
        &format!("{name}={version}"),
    ]))?;
    let deb =
        find_deb(debs)?.with_context(|| format!("apt-get put no package in {}", debs.display()))?;
    let size = fs::metadata(&deb)?.len();
    eprintln!(
        "downloaded {} ({} MB) in {}",
        deb.display(),
        size / 1_000_000,
        duration(started.elapsed())
    );
    Ok(deb)
}

/// Extracts `deb` into `dir` (through a temporary directory, so that `dir` is whole or absent)
/// and records the kernel release there.
fn extract(deb: &Path, dir: &Path) -> Result<()> {
    let mut partial = dir.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| partial.display().to_string())?;
    }
    fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    sh(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&partial))?;
    let modules = partial.join("lib/modules");
    let release = fs::read_dir(&modules)
        .with_context(|| format!("{} has no lib/modules", deb.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .with_context(|| format!("{} has an empty lib/modules", deb.display()))?;
    fs::write(partial.join("release"), format!("{release}\n"))?;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    fs::rename(&partial, dir).with_context(|| format!("cannot rename to {}", dir.display()))
}

// ---------------------------------------------------------------------------------------------
// Initramfs.

/// The guest's initramfs: busybox, /init and the modules (`MODULES`) in load order.
fn initramfs(kernel: &Kernel) -> Result<Vec<u8>> {
    let busybox_path = Path::new("/bin/busybox");
    let busybox = fs::read(busybox_path)
        .context("no /bin/busybox: install busybox-static (cargo xtask setup)")?;
    ensure!(
        elf_is_static(&busybox)?,
        "/bin/busybox is dynamically linked: install busybox-static (cargo xtask setup)"
    );
    let modules = ModuleTree::load(&kernel.modules)?.resolve(MODULES)?;
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "dev", "proc", "sys", "lower", "rw", "newroot", "modules",
    ] {
        cpio.dir(dir);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file(
        "init",
        0o755,
        INIT.replace("@MSIZE@", &MSIZE.to_string()).as_bytes(),
    );
    let mut order = String::new();
    for (name, bytes) in &modules {
        cpio.file(&format!("modules/{name}.ko"), 0o644, bytes);
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("modules/order", 0o644, order.as_bytes());
    Ok(cpio.finish())
}

/// A cpio archive in the "newc" format the kernel unpacks.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Cpio {
    const DIR: u32 = 0o040_000;
    const FILE: u32 = 0o100_000;
    const CHAR_DEVICE: u32 = 0o020_000;

    fn dir(&mut self, name: &str) {
        self.entry(name, Self::DIR | 0o755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, permissions: u32, data: &[u8]) {
        self.entry(name, Self::FILE | permissions, (0, 0), data);
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, Self::CHAR_DEVICE | 0o600, (major, minor), &[]);
    }

    /// One header, name and data, each padded to 4 bytes.
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let nlink = if mode & Self::DIR == Self::DIR { 2 } else { 1 };
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0, // device major
            0, // device minor
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0, // checksum
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }
}

/// A kernel's loadable modules by name, and the names built into it.
struct ModuleTree {
    files: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

impl ModuleTree {
    /// Indexes lib/modules/<release>.
    fn load(dir: &Path) -> Result<Self> {
        let mut paths = Vec::new();
        walk(&dir.join("kernel"), &mut paths)?;
        let files = paths
            .into_iter()
            .filter_map(|p| Some((module_name(&p)?, p)))
            .collect();
        let builtin_list = dir.join("modules.builtin");
        let builtin = fs::read_to_string(&builtin_list)
            .with_context(|| builtin_list.display().to_string())?
            .lines()
            .filter_map(|l| module_name(Path::new(l)))
            .collect();
        Ok(Self { files, builtin })
    }

    /// `wanted` and what they depend on, dependencies first, with their (decompressed) bytes;
    /// modules built into the kernel are left out.
    fn resolve(&self, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut seen = HashSet::new();
        let mut order = Vec::new();
        for name in wanted {
            self.visit(name, &mut seen, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        let name = name.replace('-', "_");
        if self.builtin.contains(&name) || !seen.insert(name.clone()) {
            return Ok(());
        }
        let path = self
            .files
            .get(&name)
            .with_context(|| format!("module {name} is neither built in nor in lib/modules"))?;
        let bytes = read_module(path)?;
        for dep in modinfo_depends(&bytes).with_context(|| path.display().to_string())? {
            self.visit(&dep, seen, order)?;
        }
        order.push((name, bytes));
        Ok(())
    }
}

/// Every file under `dir`.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), files)?;
        } else {
            files.push(entry.path());
        }
    }
    Ok(())
}

/// The module name of a `.ko` file (`9pnet-virtio.ko.xz` -> `9pnet_virtio`).
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

/// A module file's ELF bytes, decompressed on the host (busybox's insmod takes plain `.ko`).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return fs::read(path).with_context(|| name.to_string());
    };
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .with_context(|| format!("cannot run {tool} (cargo xtask setup installs it)"))?;
    ensure!(
        out.status.success(),
        "{tool} -d {name} failed ({})",
        out.status
    );
    Ok(out.stdout)
}

/// The `depends=` list in a module's `.modinfo` section.
fn modinfo_depends(ko: &[u8]) -> Result<Vec<String>> {
    let section = elf_section(ko, ".modinfo")?.context("no .modinfo section")?;
    Ok(section
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// Little-endian integer of `N` bytes at `at` in an ELF file.
fn elf_uint<const N: usize>(elf: &[u8], at: usize) -> Result<u64> {
    let bytes: [u8; N] = elf
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .context("truncated ELF file")?;
    let mut wide = [0u8; 8];
    wide[..N].copy_from_slice(&bytes);
    Ok(u64::from_le_bytes(wide))
}

/// Checks the ELF64 little-endian header.
fn elf_check(elf: &[u8]) -> Result<()> {
    ensure!(
        elf.get(..6) == Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]),
        "not a 64-bit little-endian ELF file"
    );
    Ok(())
}

/// The contents of the section called `name`.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Result<Option<&'a [u8]>> {
    elf_check(elf)?;
    let to_usize = |v: u64| usize::try_from(v).context("ELF offset out of range");
    let shoff = to_usize(elf_uint::<8>(elf, 0x28)?)?;
    let shentsize = to_usize(elf_uint::<2>(elf, 0x3a)?)?;
    let shnum = to_usize(elf_uint::<2>(elf, 0x3c)?)?;
    let shstrndx = to_usize(elf_uint::<2>(elf, 0x3e)?)?;
    let header = |i: usize| -> Result<(usize, &'a [u8])> {
        let at = shoff + i * shentsize;
        let name = to_usize(elf_uint::<4>(elf, at)?)?;
        let offset = to_usize(elf_uint::<8>(elf, at + 0x18)?)?;
        let size = to_usize(elf_uint::<8>(elf, at + 0x20)?)?;
        let data = elf
            .get(offset..offset + size)
            .context("ELF section out of bounds")?;
        Ok((name, data))
    };
    let (_, names) = header(shstrndx)?;
    for i in 0..shnum {
        let (at, data) = header(i)?;
        let section_name = names
            .get(at..)
            .and_then(|n| n.split(|&b| b == 0).next())
            .unwrap_or_default();
        if section_name == name.as_bytes() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Whether an ELF executable has no program interpreter (is statically linked).
fn elf_is_static(elf: &[u8]) -> Result<bool> {
    const PT_INTERP: u64 = 3;
    elf_check(elf)?;
    let phoff = usize::try_from(elf_uint::<8>(elf, 0x20)?)?;
    let phentsize = usize::try_from(elf_uint::<2>(elf, 0x36)?)?;
    let phnum = usize::try_from(elf_uint::<2>(elf, 0x38)?)?;
    for i in 0..phnum {
        if elf_uint::<4>(elf, phoff + i * phentsize)? == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Running the job: natively, or in a guest.

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
fn run_host(job: &Job, dir: &Path, timeout: Duration) -> Result<Row> {
    let script = prepare(job, dir)?;
    let mut cmd = Command::new("sh");
    cmd.arg(&script);
    let log = dir.join("job.log");
    let run = supervise(cmd, &log, timeout, "host")?;
    Ok(Row::collect("host", true, dir, &log, &run, job, None))
}

/// The job in a QEMU guest booting `kernel`.
fn run_guest(job: &Job, kernel: &Kernel, dir: &Path, timeout: Duration) -> Result<Row> {
    let script = prepare(job, dir)?;
    let initrd = dir.join("initrd.cpio");
    fs::write(&initrd, initramfs(kernel)?).with_context(|| initrd.display().to_string())?;
    let console = dir.join("console.log");
    let run = supervise(
        qemu(kernel, &initrd, dir, &script)?,
        &console,
        timeout,
        kernel.name,
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
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max",
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
        "console=ttyS0 panic=-1 vmjob={} vmresults={}",
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
struct Supervised {
    /// The job's progress lines (without the `udstrace-vm: ` prefix), with when they came.
    marks: Vec<(Duration, String)>,
    elapsed: Duration,
    timed_out: bool,
}

impl Supervised {
    /// When the first progress line starting with `prefix` came, and its rest.
    fn mark(&self, prefix: &str) -> Option<(Duration, &str)> {
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

// ---------------------------------------------------------------------------------------------
// Results.

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
struct Row {
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
    fn broken(label: &str, dir: &Path, error: &anyhow::Error) -> Self {
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
    fn collect(
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

    fn failed(&self) -> bool {
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

/// The table, its footnotes, timings, and the tails of failing logs.
fn report(rows: &[Row], backends: &[&str], total: Duration) -> String {
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
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
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
    fn module_names_are_normalised() {
        assert_eq!(
            module_name(Path::new("kernel/net/9p/9pnet_virtio.ko.xz")).as_deref(),
            Some("9pnet_virtio")
        );
        assert_eq!(
            module_name(Path::new("a/virtio-pci.ko")).as_deref(),
            Some("virtio_pci")
        );
        assert_eq!(module_name(Path::new("modules.order")), None);
    }

    #[test]
    fn cpio_entries_are_aligned_and_terminated() {
        let mut cpio = Cpio::default();
        cpio.dir("bin");
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = cpio.finish();
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
        // The file's header: mode 0100755, size 10.
        let at = text.find("init").unwrap() - 110;
        assert_eq!(&text[at + 14..at + 22], "000081ED");
        assert_eq!(&text[at + 54..at + 62], "0000000A");
    }

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

    #[test]
    fn the_job_script_is_valid_shell() {
        let job = Job {
            artifacts: Artifacts {
                udstrace: PathBuf::from("/x/udstrace"),
                capture_tests: PathBuf::from("/x/it's"),
            },
            backends: BACKENDS.to_vec(),
            filter: Some("stream".into()),
        };
        let script = job.script(Path::new("/tmp/results"));
        let status = Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(script.contains(r"TESTS='/x/it'\''s'"));
    }
}
