//! `--path`: which sockets a capture keeps, by the file they are bound to and by name.
//!
//! A value that names a socket file (followed through symbolic links, as `connect()` follows
//! them) is that file: its device and inode, the same from every mount namespace, so a
//! container's `/sock/app.sock` is the host's `/srv/app/app.sock` when one is a bind mount of
//! the other. The kernel programs compare each socket's and its peer's bound file (an accepted
//! socket has its listener's) with these, and each bound name with the values as typed. A
//! value that names nothing yet is waited for: its name is matched from the start, its file
//! once it appears. A file replaced during the capture (a restarted server binds a new
//! inode) is added in the same way.
//!
//! `@name` (abstract) values are names only. A glob cannot be checked in the kernel: with one
//! among the values, every `--path` is matched by name in userspace (the names a file's
//! sockets were bound with, in every network namespace, are added to the patterns).

use std::{io, os::unix::fs::FileTypeExt, os::unix::fs::MetadataExt, path::Path};

use udstrace_common::filter::{PathKey, PathName};

use super::{
    names::display,
    sockets::{names_of_socket_file, FileId},
};

/// One `--path` value.
#[derive(Debug, Clone)]
struct Value {
    text: String,
    /// A path (not `@name`, not a glob): it can name a file.
    is_path: bool,
    /// The socket file it names, when it names one.
    file: Option<PathKey>,
    /// Named nothing when the capture started, and has not yet.
    waiting: bool,
}

/// Every `--path` value and what it names.
#[derive(Debug, Clone, Default)]
pub(crate) struct PathFilter {
    values: Vec<Value>,
}

/// A socket file a value newly names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewFile {
    pub(crate) file: PathKey,
    /// The names its sockets were bound with (sock_diag), as patterns for userspace.
    pub(crate) names: Vec<String>,
    /// The value, when it was waited for (it was announced as such).
    pub(crate) appeared: Option<String>,
}

/// Whether a `--path` value is a glob.
fn is_glob(text: &str) -> bool {
    text.contains(['*', '?'])
}

/// The kernel's key of the file `stat()` says is on device `st_dev` (the C library's
/// encoding) with inode `ino` (the kernel's `s_dev` is `major << 20 | minor`).
fn file_key(st_dev: u64, ino: u64) -> PathKey {
    let id = FileId::from_stat(st_dev, ino);
    PathKey::new(id.major, id.minor, ino)
}

/// The socket file at `path`: `Ok(None)` when there is nothing there (yet), an error when
/// there is something else.
fn socket_file(path: &Path) -> Result<Option<PathKey>, String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(Some(file_key(meta.dev(), meta.ino()))),
        Ok(_) => Err(format!("{} is not a socket", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

impl PathFilter {
    /// The values as given; each path is looked up. An error for an empty value and for a
    /// path that exists and is not a socket (or cannot be looked at).
    pub(crate) fn new(values: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for text in values {
            if text.is_empty() {
                return Err("--path is empty: give a socket's path, @name or a glob".into());
            }
            let is_path = !text.starts_with('@') && !is_glob(text);
            let file = if is_path {
                socket_file(Path::new(text))?
            } else {
                None
            };
            out.push(Value {
                text: text.clone(),
                is_path,
                file,
                waiting: is_path && file.is_none(),
            });
        }
        Ok(Self { values: out })
    }

    /// Whether the kernel can apply the filter: no value is a glob.
    #[must_use]
    pub(crate) fn in_kernel(&self) -> bool {
        !self.values.is_empty() && !self.values.iter().any(|v| is_glob(&v.text))
    }

    /// Whether a value is a path (looked at again during the capture).
    #[must_use]
    pub(crate) fn has_paths(&self) -> bool {
        self.values.iter().any(|v| v.is_path)
    }

    /// The socket files the values name now.
    #[must_use]
    pub(crate) fn files(&self) -> Vec<PathKey> {
        self.values.iter().filter_map(|v| v.file).collect()
    }

    /// The values as the kernel keeps bound names (paths and `@names`; not globs).
    #[must_use]
    pub(crate) fn names(&self) -> Vec<PathName> {
        self.values
            .iter()
            .filter(|v| !is_glob(&v.text))
            .filter_map(|v| PathName::from_user(v.text.as_bytes()))
            .collect()
    }

    /// The values that name no file yet.
    #[must_use]
    pub(crate) fn waiting(&self) -> Vec<&str> {
        self.values
            .iter()
            .filter(|v| v.waiting)
            .map(|v| v.text.as_str())
            .collect()
    }

    /// The name patterns userspace matches: the values, and the names the sockets of each
    /// file were bound with in other mount namespaces (sock_diag, in every network
    /// namespace).
    #[must_use]
    pub(crate) fn patterns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in &self.values {
            if v.file.is_some() {
                for name in bound_names(&v.text) {
                    if !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
            if !out.contains(&v.text) {
                out.push(v.text.clone());
            }
        }
        out
    }

    /// Looks at each path again: the files that appeared since, or replaced the one it named.
    pub(crate) fn refresh(&mut self) -> Vec<NewFile> {
        let mut out = Vec::new();
        for v in self.values.iter_mut().filter(|v| v.is_path) {
            // Something other than a socket there now is passed over until it is one.
            let Ok(Some(file)) = socket_file(Path::new(&v.text)) else {
                continue;
            };
            if v.file == Some(file) {
                continue;
            }
            v.file = Some(file);
            out.push(NewFile {
                file,
                names: bound_names(&v.text),
                appeared: std::mem::take(&mut v.waiting).then(|| v.text.clone()),
            });
        }
        out
    }
}

/// The names the sockets bound to the socket file at `path` have, as users write them (in
/// every network namespace: a container's own path to it).
fn bound_names(path: &str) -> Vec<String> {
    names_of_socket_file(Path::new(path))
        .unwrap_or_default()
        .iter()
        .map(|name| display(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_string()).collect()
    }

    /// Files, names, globs and paths that name nothing yet; what the kernel is given; a
    /// file appearing and being replaced.
    #[test]
    fn values_resolve_to_files_and_names() {
        let dir = std::env::temp_dir().join(format!("udstrace-path-filter-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("a.sock");
        let late = dir.join("late.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let meta = std::fs::metadata(&sock).unwrap();
        let file = PathKey::new(libc::major(meta.dev()), libc::minor(meta.dev()), meta.ino());
        let (sock_text, late_text) = (
            sock.to_str().unwrap().to_string(),
            late.to_str().unwrap().to_string(),
        );

        let mut f =
            PathFilter::new(&[sock_text.clone(), late_text.clone(), "@abs".into()]).unwrap();
        assert!(f.in_kernel());
        assert_eq!(f.files(), [file]);
        assert_eq!(f.waiting(), [late_text.as_str()]);
        let names = f.names();
        assert_eq!(names.len(), 3);
        assert_eq!(names[2], PathName::from_user(b"@abs").unwrap());
        assert_eq!(names[2].len, 4);
        assert_eq!(&names[2].name[..4], b"\0abs");
        // A pathname's key counts the NUL the kernel keeps after it.
        assert_eq!(names[0].len as usize, sock_text.len() + 1);
        let patterns = f.patterns();
        assert!(
            patterns.contains(&sock_text) && patterns.contains(&late_text),
            "{patterns:?}"
        );
        assert!(f.refresh().is_empty(), "nothing changed");

        // The waited-for path appears; the first one is replaced (a new inode).
        let late_listener = UnixListener::bind(&late).unwrap();
        drop(listener);
        // The old file stays under another name, so that its inode is not free for the new
        // one to take (a file system may hand a freed inode number out again at once).
        std::fs::hard_link(&sock, dir.join("old-socket")).unwrap();
        std::fs::remove_file(&sock).unwrap();
        let _again = UnixListener::bind(&sock).unwrap();
        let new = f.refresh();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(new.len(), 2, "{new:?}");
        assert_eq!(new[0].file.ino, ino(&sock));
        assert_eq!(new[0].appeared, None);
        assert_eq!(new[0].names, [sock_text.as_str()]);
        assert_eq!(new[1].file.ino, ino(&late));
        assert_eq!(new[1].appeared.as_deref(), Some(late_text.as_str()));
        assert!(f.waiting().is_empty());
        assert!(f.refresh().is_empty());
        drop(late_listener);

        // A glob keeps the filter in userspace; names still go to the kernel's list.
        let g = PathFilter::new(&strings(&["/run/*.sock", "@x"])).unwrap();
        assert!(!g.in_kernel());
        assert_eq!(g.names().len(), 1);
        assert!(!PathFilter::default().in_kernel());

        // Errors: empty, not a socket.
        assert!(PathFilter::new(&strings(&[""])).is_err());
        let plain = dir.join("plain");
        std::fs::write(&plain, b"x").unwrap();
        assert_eq!(
            PathFilter::new(&[plain.to_str().unwrap().to_string()]).unwrap_err(),
            format!("{} is not a socket", plain.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `stat()`'s device number (the C library's encoding) as the kernel's `s_dev`
    /// (`MKDEV`: `major << 20 | minor`), with the whole inode number.
    #[test]
    fn device_numbers_as_the_kernel_keeps_them() {
        // makedev(259, 70000): minor & 0xff | (major & 0xfff) << 8 | (minor & !0xff) << 12.
        let key = file_key(0x1111_0370, (7 << 32) | 5);
        assert_eq!(key.dev, 0x1031_1170, "MKDEV(259, 70000): 259 << 20 | 70000");
        assert_eq!(key.ino, (7 << 32) | 5);
        assert_eq!(key.pad, 0);
        assert_eq!(file_key(libc::makedev(8, 1), 2).dev, (8 << 20) | 1);
        assert_eq!(file_key(0, 1).dev, 0);
    }

    #[test]
    fn kernel_names() {
        assert_eq!(PathName::from_user(b""), None);
        assert_eq!(PathName::from_user(b"/a\0b"), None);
        let long = vec![b'x'; 108];
        let key = PathName::from_user(&long).unwrap();
        assert_eq!(
            key.len, 108,
            "cut at sun_path's size, without room for the NUL"
        );
        assert_eq!(PathName::from_user(&[b'x'; 109]), None);
        let at = PathName::from_user(b"@").unwrap();
        assert_eq!((at.len, at.name[0]), (1, 0));
        assert_eq!(PathName::from_user(&[b'@'; 109]).map(|k| k.len), None);
    }
}
