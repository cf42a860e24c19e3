//! Opening `-w FILE` safely. udstrace runs as root, and a capture holds secrets, so the output
//! path is treated as another user may have prepared it:
//!
//! - A new file is created with `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600.
//! - An existing name is opened with `O_PATH|O_NOFOLLOW` (which neither follows a symbolic
//!   link nor opens a device or FIFO for real) and judged by `fstat` of that descriptor, never by
//!   a path looked up again: a symbolic link, a directory, a device (but `/dev/null`), a
//!   socket, a file or FIFO of another user, a file with other hard links are refused with one
//!   line. An own regular file is then reopened for writing through the same descriptor
//!   (`/proc/self/fd/N`: the same inode), set to 0600 and truncated (by the output thread,
//!   when it takes the file), as tcpdump replaces its file; an own FIFO is written as it is.
//! - Wireshark's extcap FIFO (`--fifo`), which Wireshark made and may belong to the user
//!   running Wireshark, must be a FIFO, of any owner.
//!
//! Opening a FIFO for writing waits until it has a reader: that open is left to the output
//! thread (`Opened::into_file`), so that a FIFO nobody reads cannot hold up a stop.

use std::{
    ffi::CString,
    fs::{File, Metadata, OpenOptions},
    io,
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::{
            ffi::OsStrExt,
            fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
        },
    },
    path::{Path, PathBuf},
};

use crate::{error::Error, sys};

/// Where a capture's pcapng goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// `-w -`: standard output, whatever it is.
    Stdout,
    /// `-w FILE`.
    File(PathBuf),
    /// Wireshark's extcap pipe (`--capture --fifo PIPE`).
    ExtcapFifo(PathBuf),
}

impl Destination {
    /// How messages name the output of `-w` (`None`: the text view).
    #[must_use]
    pub(crate) fn name_of(write: Option<&Self>) -> PathBuf {
        match write {
            None | Some(Self::Stdout) => PathBuf::from("standard output"),
            Some(Self::File(p) | Self::ExtcapFifo(p)) => p.clone(),
        }
    }
}

/// An output that passed the checks.
#[derive(Debug)]
pub(crate) enum Opened {
    /// Open for writing.
    Ready(File),
    /// An own regular file, open for writing, emptied when the output thread takes it (a
    /// file of a rotated set may be written under the same name until then: `-W`, `-G`).
    Replaced(File),
    /// A FIFO, held by an `O_PATH` descriptor: opening it for writing waits for a reader.
    Fifo(OwnedFd),
}

impl Opened {
    /// The output open for writing; for a FIFO this waits until it has a reader.
    pub(crate) fn into_file(self) -> io::Result<File> {
        match self {
            Self::Ready(f) => Ok(f),
            Self::Replaced(f) => {
                f.set_len(0)?;
                Ok(f)
            }
            Self::Fifo(fd) => reopen(&fd),
        }
    }
}

/// Standard output, or `path` checked as the module says.
pub(crate) fn open(dest: &Destination) -> Result<Opened, Error> {
    match dest {
        Destination::Stdout => io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(|fd| Opened::Ready(File::from(fd)))
            .map_err(|source| Error::Output {
                path: Destination::name_of(Some(dest)),
                source,
            }),
        Destination::File(path) => open_path(path, false),
        Destination::ExtcapFifo(path) => open_path(path, true),
    }
}

fn open_path(path: &Path, extcap: bool) -> Result<Opened, Error> {
    let io_error = |source: io::Error| Error::Output {
        path: path.to_path_buf(),
        source,
    };
    let refuse = |reason: String| Error::UnsafeOutput {
        path: path.to_path_buf(),
        reason,
    };
    let Some(name) = path.file_name() else {
        return Err(refuse("it is a directory".into()));
    };
    let name = CString::new(name.as_bytes()).map_err(|_| refuse("it holds a NUL byte".into()))?;
    let dir_path = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir_path)
        .map_err(io_error)?;
    if !extcap {
        warn_if_others_can_replace(&dir, dir_path);
    }
    // The name may vanish between the two opens (another process removing it): try again.
    for _ in 0..3 {
        if !extcap {
            let flags =
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY;
            match sys::openat(&dir, &name, flags, 0o600) {
                Ok(fd) => {
                    let file = File::from(fd);
                    // Exactly 0600, whatever the umask.
                    file.set_permissions(PermissionsExt::from_mode(0o600))
                        .map_err(io_error)?;
                    return Ok(Opened::Ready(file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        let fd = match sys::openat(&dir, &name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !extcap => continue,
            Err(e) => return Err(io_error(e)),
        };
        let meta = File::from(fd.try_clone().map_err(io_error)?)
            .metadata()
            .map_err(io_error)?;
        if let Some(reason) = refusal(path, &meta, extcap) {
            return Err(refuse(reason));
        }
        if meta.file_type().is_fifo() {
            return Ok(Opened::Fifo(fd));
        }
        let file = reopen(&fd).map_err(io_error)?;
        if meta.is_file() {
            // As tcpdump replaces its file: readable by its owner only, and emptied.
            file.set_permissions(PermissionsExt::from_mode(0o600))
                .map_err(io_error)?;
            return Ok(Opened::Replaced(file));
        }
        return Ok(Opened::Ready(file));
    }
    Err(io_error(io::Error::other(
        "it keeps appearing and vanishing; try again",
    )))
}

/// Why an existing output must not be written, or `None` if it may.
fn refusal(path: &Path, meta: &Metadata, extcap: bool) -> Option<String> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| format!(" to {}", t.display()))
            .unwrap_or_default();
        return Some(format!(
            "it is a symbolic link{target}; udstrace never writes through one"
        ));
    }
    if extcap {
        // Wireshark's own pipe, made by the user running Wireshark.
        return (!kind.is_fifo()).then(|| "the extcap pipe is not a FIFO".into());
    }
    if kind.is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        return None; // /dev/null
    }
    if kind.is_dir() {
        return Some("it is a directory".into());
    }
    if kind.is_block_device() || kind.is_char_device() {
        return Some("it is a device".into());
    }
    if kind.is_socket() {
        return Some("it is a socket".into());
    }
    let me = sys::effective_uid();
    if meta.uid() != me {
        let what = if kind.is_fifo() { "a FIFO" } else { "a file" };
        return Some(format!(
            "it is {what} of {}, not of {} that udstrace runs as (remove it, or write elsewhere)",
            user(meta.uid()),
            user(me)
        ));
    }
    if kind.is_file() && meta.nlink() > 1 {
        return Some(format!(
            "it has {} hard links; udstrace replaces only a file that has no other name",
            meta.nlink()
        ));
    }
    None
}

/// `user NAME (UID)`, or `uid UID` for a user the database does not know.
fn user(uid: u32) -> String {
    sys::user_name(uid).map_or_else(|| format!("uid {uid}"), |n| format!("user {n} ({uid})"))
}

/// The file behind an `O_PATH` descriptor, opened for writing: through `/proc/self/fd`,
/// which names that very inode, whatever the path now holds.
fn reopen(fd: &OwnedFd) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let (was, is) = (File::from(fd.try_clone()?).metadata()?, file.metadata()?);
    if (was.dev(), was.ino()) != (is.dev(), is.ino()) {
        return Err(io::Error::other("it changed while being opened"));
    }
    Ok(file)
}

/// A directory writable by other users without the sticky bit lets them remove or rename the
/// capture file (not read it): say so.
fn warn_if_others_can_replace(dir: &File, dir_path: &Path) {
    if let Ok(meta) = dir.metadata() {
        let mode = meta.mode();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            eprintln!(
                "udstrace: warning: other users can write to {} (mode {:o}, no sticky bit): they \
                 can remove or replace the capture file",
                dir_path.display(),
                mode & 0o7777
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A fresh directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("udstrace-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    fn open_file(path: &Path) -> Result<File, Error> {
        open(&Destination::File(path.to_path_buf())).map(|o| o.into_file().unwrap())
    }

    fn refusal_of(path: &Path) -> String {
        match open_file(path) {
            Err(Error::UnsafeOutput { reason, .. }) => reason,
            other => panic!("{} not refused: {other:?}", path.display()),
        }
    }

    #[test]
    fn new_and_own_files() {
        let dir = scratch("own");
        let new = dir.join("new.pcapng");
        open_file(&new).unwrap().write_all(b"abc").unwrap();
        let meta = std::fs::metadata(&new).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.len()), (0o600, 3));

        // Replaced in place: the same inode, emptied, 0600.
        std::fs::set_permissions(&new, PermissionsExt::from_mode(0o644)).unwrap();
        let ino = meta.ino();
        open_file(&new).unwrap().write_all(b"z").unwrap();
        let meta = std::fs::metadata(&new).unwrap();
        assert_eq!(
            (meta.ino(), meta.mode() & 0o7777, meta.len()),
            (ino, 0o600, 1)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_directories_and_devices_are_refused() {
        let dir = scratch("refused");
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.join("link.pcapng");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(refusal_of(&link).starts_with("it is a symbolic link to "));
        let dangling = dir.join("dangling.pcapng");
        std::os::unix::fs::symlink(dir.join("nothing"), &dangling).unwrap();
        assert!(refusal_of(&dangling).starts_with("it is a symbolic link"));
        assert!(
            !dir.join("nothing").exists(),
            "not created through the link"
        );
        let hard = dir.join("hard.pcapng");
        std::fs::hard_link(&target, &hard).unwrap();
        assert!(refusal_of(&hard).starts_with("it has 2 hard links"));
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(refusal_of(&dir), "it is a directory");
        assert_eq!(refusal_of(Path::new("/")), "it is a directory");
        assert_eq!(refusal_of(Path::new("/dev/zero")), "it is a device");
        open_file(Path::new("/dev/null")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Wireshark's pipe is taken whoever made it, but only if it is a FIFO.
    #[test]
    fn extcap_pipe_must_be_a_fifo() {
        let dir = scratch("extcap");
        let file = dir.join("not-a-fifo");
        std::fs::write(&file, b"").unwrap();
        match open(&Destination::ExtcapFifo(file)) {
            Err(Error::UnsafeOutput { reason, .. }) => {
                assert_eq!(reason, "the extcap pipe is not a FIFO");
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
