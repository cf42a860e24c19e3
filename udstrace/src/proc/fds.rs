//! What a descriptor passed with `SCM_RIGHTS` is, in the words `ls -l /proc/PID/fd` uses:
//! a file's path, `pipe:[INODE]`, `socket:[INODE]`, `anon_inode:[eventfd]`,
//! `/memfd:NAME (deleted)`.
//!
//! The kernel program recorded, while the sender had the descriptor open, the file's device,
//! inode, type, name and the names of up to four directories above it. The description is
//! the sender's `/proc/PID/fd/FD` link when that still names the same file (same device and
//! inode). Once the sender has closed or reused the descriptor, it is built from the record:
//! a path inside the file system placed under the mount point the sender's (or else
//! udstrace's) mount table gives the device, or `.../dir/name` when the file is deeper than
//! the directories recorded.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::tracer::record::PassedFd;

const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;
const S_IFIFO: u16 = 0o010_000;

/// Describes `fd`, passed by process `pid`, looking in `proc` (normally `/proc`).
#[must_use]
pub(crate) fn describe(proc: &Path, pid: u32, fd: &PassedFd) -> String {
    let link = proc
        .join(pid.to_string())
        .join("fd")
        .join(fd.fd.to_string());
    if let (Ok(target), Ok(meta)) = (std::fs::read_link(&link), std::fs::metadata(&link)) {
        let dev = meta.dev();
        if meta.ino() == fd.ino
            && libc::major(dev) == fd.dev_major
            && libc::minor(dev) == fd.dev_minor
        {
            return target.to_string_lossy().into_owned();
        }
    }
    let mounts = std::fs::read_to_string(proc.join(pid.to_string()).join("mountinfo"))
        .or_else(|_| std::fs::read_to_string(proc.join("self/mountinfo")))
        .unwrap_or_default();
    from_record(fd, &mounts)
}

/// The description from the kernel's record alone, with `mountinfo` (a
/// `/proc/PID/mountinfo`) to place a file system's paths.
#[must_use]
pub(crate) fn from_record(fd: &PassedFd, mountinfo: &str) -> String {
    let name = String::from_utf8_lossy(&fd.name);
    match fd.mode & S_IFMT {
        S_IFSOCK => format!("socket:[{}]", fd.ino),
        S_IFIFO if name.is_empty() => format!("pipe:[{}]", fd.ino),
        // Anonymous inodes (eventfd, signalfd, timerfd, pidfd, ...) are all one inode; their
        // dentries are named after their kind.
        _ if name.starts_with('[') => format!("anon_inode:{name}"),
        _ if name.starts_with("memfd:") => format!("/{name} (deleted)"),
        _ => {
            let mut inside = String::new();
            for dir in fd.dirs.iter().rev() {
                inside.push('/');
                inside.push_str(&String::from_utf8_lossy(dir));
            }
            inside.push('/');
            inside.push_str(&name);
            if !fd.at_root {
                return format!("...{inside}");
            }
            match mount_point(mountinfo, fd.dev_major, fd.dev_minor, &inside) {
                Some(path) => path.to_string_lossy().into_owned(),
                None => inside,
            }
        }
    }
}

/// Where `inside` (a path from the root of the file system on device `major:minor`) is in
/// the mount table `mountinfo`: the first mount of that device whose root contains it.
fn mount_point(mountinfo: &str, major: u32, minor: u32, inside: &str) -> Option<PathBuf> {
    let dev = format!("{major}:{minor}");
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJOR:MINOR ROOT MOUNT-POINT ...
        let mut fields = line.split(' ');
        let (_, _, d, root, at) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if d != dev {
            return None;
        }
        let rest = if root == "/" {
            inside
        } else {
            inside.strip_prefix(root)?
        };
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        let at = unescape_octal(at);
        Some(Path::new(&at).join(rest.trim_start_matches('/')))
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\NNN` (octal).
pub(crate) fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn passed(mode: u16, ino: u64, name: &[u8], dirs: &[&[u8]], at_root: bool) -> PassedFd {
        PassedFd {
            fd: 3,
            mode,
            dev_major: 0,
            dev_minor: 42,
            ino,
            name: name.to_vec(),
            dirs: dirs.iter().map(|d| d.to_vec()).collect(),
            at_root,
        }
    }

    const MOUNTS: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:42 / /tmp rw shared:5 - tmpfs tmpfs rw
31 22 0:42 /sub /srv/my\\040dir rw - tmpfs tmpfs rw
";

    #[test]
    fn descriptions_from_the_record() {
        let file = |dirs: &[&[u8]], at_root| passed(0o100_644, 5, b"x.db", dirs, at_root);
        assert_eq!(
            from_record(&passed(0o140_777, 99, b"", &[], true), ""),
            "socket:[99]"
        );
        assert_eq!(
            from_record(&passed(0o010_600, 98, b"", &[], true), ""),
            "pipe:[98]"
        );
        assert_eq!(
            from_record(&passed(0o600, 1, b"[eventfd]", &[], true), ""),
            "anon_inode:[eventfd]"
        );
        assert_eq!(
            from_record(&passed(0o100_777, 5, b"memfd:buf", &[], true), ""),
            "/memfd:buf (deleted)"
        );
        // Placed under the mount point of its device (the first mount whose root holds it).
        assert_eq!(from_record(&file(&[b"run"], true), MOUNTS), "/tmp/run/x.db");
        assert_eq!(
            from_record(&file(&[b"a", b"sub"], true), MOUNTS),
            "/tmp/sub/a/x.db"
        );
        let bind = "31 22 0:42 /sub /srv/my\\040dir rw - tmpfs tmpfs rw\n";
        assert_eq!(
            from_record(&file(&[b"a", b"sub"], true), bind),
            "/srv/my dir/a/x.db"
        );
        // No mount of the device: the path inside its file system.
        assert_eq!(from_record(&file(&[b"run"], true), ""), "/run/x.db");
        // Deeper than the directories recorded.
        assert_eq!(
            from_record(&file(&[b"d", b"c", b"b", b"a"], false), MOUNTS),
            ".../a/b/c/d/x.db"
        );
    }

    /// An open file of this process is described by its full path; the same descriptor
    /// number with another inode (closed and reused since) falls back to the record.
    #[test]
    fn full_path_only_for_the_same_file() {
        let dir = std::env::temp_dir().join(format!("udstrace-fds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passed.txt");
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let mut fd = PassedFd {
            fd: file.as_raw_fd(),
            mode: 0o100_644,
            dev_major: libc::major(meta.dev()),
            dev_minor: libc::minor(meta.dev()),
            ino: meta.ino(),
            name: b"passed.txt".to_vec(),
            dirs: Vec::new(),
            at_root: false,
        };
        let proc = Path::new("/proc");
        assert_eq!(
            describe(proc, std::process::id(), &fd),
            path.to_string_lossy()
        );
        fd.ino += 1;
        assert_eq!(describe(proc, std::process::id(), &fd), ".../passed.txt");
        drop(file);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
