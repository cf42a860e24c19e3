//! The guests' initramfs: busybox, /init and the kernel's modules, as a newc cpio archive.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{ensure, Context, Result};

use super::debian::Kernel;

/// Kernel modules that mount a 9p share over virtio and an overlay on it, and `unix_diag`
/// (sock_diag for Unix sockets, which udstrace reads: an installed system loads it on demand
/// through modprobe, which the guest lacks); their dependencies are added.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay", "unix_diag"];
/// The largest 9p message size every kernel here accepts over virtio (5.10's limit).
const MSIZE: u32 = 512_000;

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
@FOREIGN@
chroot /newroot @SHELL@ "$job"
echo "udstrace-vm: job exited with $?"
sync
umount "/newroot$results"
poweroff -f
"#;

/// What init adds to the host's root (in the guest's overlay, not on the host) when the guest
/// cannot run the host's programs: its own busybox, with its applets in `/udstrace-vm/bin`,
/// the cross C library's loader (libc6-dev-arm64-cross) where the cross-built binaries look
/// for it, and QEMU's user-mode x86_64 emulator (Debian's qemu-user-static of the guest's
/// architecture) registered with binfmt_misc, so that the host's programs the tests start
/// (python3, tshark, setpriv) run too, emulated. `F`: the emulator is opened now, outside the
/// chroot.
const FOREIGN: &str = r#"mkdir -p /newroot/udstrace-vm/bin && cp /bin/busybox /newroot/udstrace-vm/ || stop "busybox"
chroot /newroot /udstrace-vm/busybox --install -s /udstrace-vm/bin || stop "busybox --install"
ln -sf @LOADER@ /newroot/lib/ || stop "loader"
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || stop "binfmt_misc"
echo ':qemu-x86_64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00:\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/lower@EMULATOR@:F' \
  > /proc/sys/fs/binfmt_misc/register || stop "register the x86_64 emulator""#;

/// What a guest that cannot run the host's programs needs (see `FOREIGN`).
pub(super) struct ForeignRoot<'a> {
    /// The cross C library's loader, a host path.
    pub(super) loader: &'a str,
    /// The x86_64 user-mode emulator for the guest's architecture, a host path.
    pub(super) emulator: &'a Path,
}

/// The guest's initramfs: busybox (`busybox`, of the kernel's architecture), /init and the
/// modules (`MODULES`, and binfmt_misc for a `foreign` guest) in load order.
pub(super) fn initramfs(
    kernel: &Kernel,
    busybox: &Path,
    foreign: Option<&ForeignRoot>,
) -> Result<Vec<u8>> {
    let busybox = fs::read(busybox).with_context(|| {
        format!(
            "no {}: install busybox-static (cargo xtask setup)",
            busybox.display()
        )
    })?;
    ensure!(
        elf_is_static(&busybox)?,
        "busybox is dynamically linked: install busybox-static (cargo xtask setup)"
    );
    let mut wanted = MODULES.to_vec();
    if foreign.is_some() {
        wanted.push("binfmt_misc");
    }
    let modules = ModuleTree::load(&kernel.modules)?.resolve(&wanted)?;
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "dev", "proc", "sys", "lower", "rw", "newroot", "modules",
    ] {
        cpio.dir(dir);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &busybox);
    let init = INIT.replace("@MSIZE@", &MSIZE.to_string());
    let init = match foreign {
        Some(f) => init
            .replace(
                "@FOREIGN@",
                &FOREIGN
                    .replace("@LOADER@", f.loader)
                    .replace("@EMULATOR@", &f.emulator.to_string_lossy()),
            )
            .replace("@SHELL@", "/udstrace-vm/bin/sh"),
        None => init.replace("@FOREIGN@", "").replace("@SHELL@", "/bin/sh"),
    };
    cpio.file("init", 0o755, init.as_bytes());
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
    /// None: the package has no `modules.builtin` (sid's split packages): a module that is
    /// not a file is taken to be built in.
    builtin: Option<HashSet<String>>,
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
        let builtin = fs::read_to_string(&builtin_list).ok().map(|text| {
            text.lines()
                .filter_map(|l| module_name(Path::new(l)))
                .collect()
        });
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
        let built_in = match &self.builtin {
            Some(list) => list.contains(&name),
            None => !self.files.contains_key(&name),
        };
        if built_in || !seen.insert(name.clone()) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
