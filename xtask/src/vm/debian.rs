//! Kernels: Debian's kernel packages, fetched with apt into the cache and extracted there.

use std::{
    fs,
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, ensure, Context, Result};

use super::report::duration;
use crate::util::{output, sh, show};

/// Downloaded packages and extracted kernels, outside the repository so that fresh clones
/// reuse them.
const CACHE: &str = "/var/cache/udstrace-vm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Debian 12's archive keyring, which also holds the bullseye keys.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A Debian kernel to test on.
pub(super) struct KernelSpec {
    /// Major.minor (`arm64-` first for an arm64 kernel), as `--kernel` names it.
    pub(super) name: &'static str,
    /// Debian's architecture: `amd64` or `arm64`.
    pub(super) arch: &'static str,
    /// The Debian suite whose `linux-image-ARCH` depends on it.
    pub(super) suite: &'static str,
    /// Backends tested in a guest of their own, beside the guest that tests the others, so
    /// that the two run at once: 5.10's fentry tests took 5 min under emulation, its kprobe
    /// tests 4 (18 and 7 before their verification was shared).
    pub(super) apart: &'static [&'static str],
    /// Whether `cargo xtask vm-test` runs it when no `--kernel` is given (the matrix `cargo
    /// xtask test` runs); the others are chosen by name.
    pub(super) default: bool,
    /// The backends this kernel is known to support (measured): one that `udstrace backends`
    /// calls unsupported there fails the row, so that a change which loses a backend on a
    /// kernel does not pass as a kernel that cannot.
    pub(super) supported: &'static [&'static str],
    /// The version its image package must have (`linux-image-VERSION.`), or None for a suite
    /// that follows the newest release (unstable).
    pub(super) version: Option<&'static str>,
}

pub(super) const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "5.10",
        arch: "amd64",
        suite: "bullseye",
        apart: &["fentry"],
        supported: &["fentry", "kprobe"],
        default: true,
        version: Some("5.10"),
    },
    KernelSpec {
        name: "6.1",
        arch: "amd64",
        suite: "bookworm",
        apart: &[],
        supported: &["fentry", "kprobe"],
        default: true,
        version: Some("6.1"),
    },
    KernelSpec {
        name: "6.12",
        arch: "amd64",
        suite: "bookworm-backports",
        apart: &[],
        supported: &["fentry", "kprobe", "tracepoint"],
        default: true,
        version: Some("6.12"),
    },
    // Debian unstable: the newest release Debian packages, whatever its version.
    KernelSpec {
        name: "sid",
        arch: "amd64",
        suite: "sid",
        apart: &[],
        supported: &["fentry", "kprobe", "tracepoint"],
        default: false,
        version: None,
    },
    // arm64, booted by qemu-system-aarch64 (chosen by name or by `--arch arm64`).
    KernelSpec {
        name: "arm64-5.10",
        arch: "arm64",
        suite: "bullseye",
        apart: &[],
        supported: &["kprobe"],
        default: true,
        version: Some("5.10"),
    },
    KernelSpec {
        name: "arm64-6.1",
        arch: "arm64",
        suite: "bookworm",
        apart: &[],
        supported: &["kprobe"],
        default: true,
        version: Some("6.1"),
    },
    KernelSpec {
        name: "arm64-6.12",
        arch: "arm64",
        suite: "bookworm-backports",
        apart: &[],
        supported: &["fentry", "kprobe", "tracepoint"],
        default: true,
        version: Some("6.12"),
    },
];

/// An extracted Debian kernel.
#[derive(Clone)]
pub(super) struct Kernel {
    pub(super) name: &'static str,
    /// Debian's architecture name.
    pub(super) arch: &'static str,
    /// What `uname -r` says.
    pub(super) release: String,
    pub(super) vmlinuz: PathBuf,
    /// lib/modules/<release>.
    pub(super) modules: PathBuf,
}

/// The kernel of `spec` from the cache, downloaded and extracted first if missing.
pub(super) fn fetch_kernel(spec: &KernelSpec) -> Result<Kernel> {
    let dir = Path::new(CACHE).join("kernels").join(spec.name);
    if let Some(k) = cached_kernel(spec, &dir) {
        return Ok(k);
    }
    let _lock = CacheLock::take()?;
    if let Some(k) = cached_kernel(spec, &dir) {
        return Ok(k);
    }
    let debs = Path::new(CACHE).join("debs").join(spec.name);
    let mut packages = all_debs(&debs)?;
    if packages.is_empty() {
        packages = download(spec, &debs)?;
    }
    extract(&packages, &dir)?;
    cached_kernel(spec, &dir).with_context(|| format!("{} holds no kernel", debs.display()))
}

/// Every `.deb` in `dir` (none if it does not exist).
fn all_debs(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut debs = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            debs.push(path);
        }
    }
    Ok(debs)
}

/// The kernel extracted in `dir`, if extraction finished there.
fn cached_kernel(spec: &KernelSpec, dir: &Path) -> Option<Kernel> {
    let release = fs::read_to_string(dir.join("release"))
        .ok()?
        .trim()
        .to_string();
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| dir.join(d).join(&release))
        .find(|p| p.is_dir())?;
    // boot/vmlinuz-RELEASE, or (sid's linux-binary package) in the modules' directory.
    let vmlinuz = [
        dir.join("boot").join(format!("vmlinuz-{release}")),
        modules.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.exists())?;
    Some(Kernel {
        name: spec.name,
        arch: spec.arch,
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
    arch: String,
}

impl Apt {
    fn new(suite: &str, arch: &str) -> Result<Self> {
        let dir = if arch == "amd64" {
            Path::new(CACHE).join("apt").join(suite)
        } else {
            Path::new(CACHE).join("apt").join(format!("{suite}-{arch}"))
        };
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let sources = format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n");
        fs::write(dir.join("sources.list"), sources)
            .with_context(|| dir.join("sources.list").display().to_string())?;
        Ok(Self {
            dir,
            arch: arch.to_string(),
        })
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
            format!("APT::Architecture={}", self.arch),
            format!("APT::Architectures={}", self.arch),
            "APT::Sandbox::User=root".into(),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        ] {
            cmd.arg("-o").arg(option);
        }
        cmd
    }

    /// The kernel image package (name, version) the suite's `linux-image-ARCH` depends on.
    fn image_package(&self, spec: &KernelSpec) -> Result<(String, String)> {
        let meta = format!("linux-image-{}", self.arch);
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", "--no-all-versions", &meta]);
        let text = output(&mut cmd).with_context(|| format!("{} failed", show(&cmd)))?;
        let depends = text
            .lines()
            .find_map(|l| l.strip_prefix("Depends: "))
            .with_context(|| format!("{meta} has no Depends"))?;
        // The image itself: newer suites list other packages first (sid's `linux-base-amd64`).
        let first = depends
            .split([',', '|'])
            .map(str::trim)
            .find(|d| d.starts_with("linux-image-"))
            .with_context(|| format!("{meta} depends on no linux-image package: {depends}"))?;
        let (name, version) = first
            .split_once(" (= ")
            .and_then(|(n, v)| Some((n, v.strip_suffix(')')?)))
            .with_context(|| format!("unexpected dependency of {meta}: {first}"))?;
        if let Some(version) = spec.version {
            ensure!(
                name.starts_with(&format!("linux-image-{version}.")),
                "{}'s {meta} depends on {name}, not a {version} kernel",
                spec.suite,
            );
        }
        Ok((name.to_string(), version.to_string()))
    }
}

/// Downloads the kernel image package of `spec` into `debs`, with the packages that hold the
/// kernel and its modules when the image package is only their meta package (sid splits the
/// image into `linux-binary-*` and `linux-modules-*`).
fn download(spec: &KernelSpec, debs: &Path) -> Result<Vec<PathBuf>> {
    let apt = Apt::new(spec.suite, spec.arch)?;
    sh(apt.command("apt-get").args(["-q", "update"]))?;
    let (name, version) = apt.image_package(spec)?;
    let mut packages = vec![format!("{name}={version}")];
    let mut cmd = apt.command("apt-cache");
    cmd.args(["show", "--no-all-versions", &name]);
    let text = output(&mut cmd).with_context(|| format!("{} failed", show(&cmd)))?;
    let depends = text
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_default();
    for dep in depends.split([',', '|']).map(str::trim) {
        if let Some((dep_name, dep_version)) = dep
            .split_once(" (= ")
            .and_then(|(n, v)| Some((n, v.strip_suffix(')')?)))
            .filter(|(n, _)| n.starts_with("linux-binary-") || n.starts_with("linux-modules-"))
        {
            packages.push(format!("{dep_name}={dep_version}"));
        }
    }
    fs::create_dir_all(debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let started = Instant::now();
    sh(apt
        .command("apt-get")
        .current_dir(debs)
        .args(["-q", "download"])
        .args(&packages))?;
    let downloaded = all_debs(debs)?;
    ensure!(
        !downloaded.is_empty(),
        "apt-get put no package in {}",
        debs.display()
    );
    let size: u64 = downloaded
        .iter()
        .filter_map(|d| fs::metadata(d).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "downloaded {} ({} MB) in {}",
        packages.join(" "),
        size / 1_000_000,
        duration(started.elapsed())
    );
    Ok(downloaded)
}

/// Extracts `debs` into `dir` (through a temporary directory, so that `dir` is whole or
/// absent) and records the kernel release there.
fn extract(debs: &[PathBuf], dir: &Path) -> Result<()> {
    let mut partial = dir.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| partial.display().to_string())?;
    }
    fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    for deb in debs {
        sh(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&partial))?;
    }
    // Newer packages put the modules under usr/lib (merged /usr).
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| partial.join(m))
        .find(|m| m.is_dir())
        .with_context(|| format!("{} holds no lib/modules", debs[0].display()))?;
    let release = fs::read_dir(&modules)
        .with_context(|| modules.display().to_string())?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .with_context(|| format!("{} is empty", modules.display()))?;
    fs::write(partial.join("release"), format!("{release}\n"))?;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    fs::rename(&partial, dir).with_context(|| format!("cannot rename to {}", dir.display()))
}

/// busybox for the initramfs of a guest of architecture `arch`: the host's
/// (busybox-static) for amd64, else Debian 12's busybox-static of that architecture.
pub(super) fn busybox(arch: &str) -> Result<PathBuf> {
    if arch == "amd64" {
        return Ok(PathBuf::from("/bin/busybox"));
    }
    package_file(arch, "busybox-static", "bin/busybox")
}

/// `path` of Debian 12's package `package` for architecture `arch`, fetched into the cache
/// like the kernels (and extracted there) the first time.
pub(super) fn package_file(arch: &str, package: &str, path: &str) -> Result<PathBuf> {
    let dir = Path::new(CACHE).join("tools").join(arch).join(package);
    let file = dir.join(path);
    if file.exists() {
        return Ok(file);
    }
    let _lock = CacheLock::take()?;
    let debs = Path::new(CACHE)
        .join("debs")
        .join(format!("{package}-{arch}"));
    let deb = if let Some(deb) = find_deb(&debs)? {
        deb
    } else {
        let apt = Apt::new("bookworm", arch)?;
        sh(apt.command("apt-get").args(["-q", "update"]))?;
        fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
        sh(apt
            .command("apt-get")
            .current_dir(&debs)
            .args(["-q", "download", package]))?;
        find_deb(&debs)?.with_context(|| format!("apt-get put no package in {}", debs.display()))?
    };
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| dir.display().to_string())?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    ensure!(file.exists(), "{} holds no {path}", deb.display());
    Ok(file)
}
