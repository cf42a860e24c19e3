//! The machine's Unix sockets: type, state, name, inode, peer and bound file from the
//! kernel's sock_diag interface, in udstrace's network namespace or in all of them, and the
//! processes that hold each one from /proc/*/fd.

use super::netns;
use crate::sys;
use std::{collections::HashMap, io, mem::size_of, path::Path};

use udstrace_common::SockType;

/// One Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnixSocket {
    pub(crate) ino: u64,
    pub(crate) sock_type: Option<SockType>,
    /// `TCP_LISTEN`-style state number from the kernel (1 established, 7 unconnected, 10
    /// listening, ...).
    pub(crate) state: u8,
    /// Bound name: a path, a leading NUL for an abstract name, empty when unnamed.
    pub(crate) name: Vec<u8>,
    /// Inode of the connected peer, 0 for none.
    pub(crate) peer: u64,
    /// For a socket bound to a path (and a connection accepted from it): the file of that
    /// path, the same from every mount namespace.
    pub(crate) file: Option<FileId>,
    /// Inode of its network namespace (`net:[N]`).
    pub(crate) netns: u64,
}

/// A file as sock_diag names a socket's: its device and its inode number, cut to the 32
/// bits `struct unix_diag_vfs` has room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub(crate) major: u32,
    pub(crate) minor: u32,
    pub(crate) ino: u32,
}

impl FileId {
    /// From `struct unix_diag_vfs`: the device is the kernel's own `dev_t` (`major << 20 |
    /// minor`, `MKDEV`).
    #[must_use]
    pub(crate) fn from_diag(dev: u32, ino: u32) -> Self {
        Self {
            major: dev >> 20,
            minor: dev & 0xf_ffff,
            ino,
        }
    }

    /// From `stat()`: `st_dev` is the C library's encoding (the minor's low byte, then
    /// the major's 12 low bits, then the minor's upper bits, then the major's), which
    /// `major()` and `minor()` undo.
    #[must_use]
    pub(crate) fn from_stat(dev: u64, ino: u64) -> Self {
        Self {
            major: libc::major(dev),
            minor: libc::minor(dev),
            #[allow(
                clippy::cast_possible_truncation,
                reason = "the kernel's unix_diag_vfs keeps the low 32 bits"
            )]
            ino: ino as u32,
        }
    }

    /// The socket file at `path`; an error, as one line, when there is none or it is some
    /// other kind of file.
    pub(crate) fn of_socket_file(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.file_type().is_socket() {
            return Err(format!("{} is not a socket", path.display()));
        }
        Ok(Self::from_stat(meta.dev(), meta.ino()))
    }
}

impl UnixSocket {
    /// The state as `ss` names it.
    #[must_use]
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            1 => "ESTAB",
            2 => "SYN-SENT",
            7 => "UNCONN",
            8 => "CLOSE-WAIT",
            10 => "LISTEN",
            _ => "UNKNOWN",
        }
    }
}

pub(crate) use crate::packet::Holder;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_VFS: u32 = 2;
const UDIAG_SHOW_PEER: u32 = 4;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;

/// Every Unix socket of udstrace's network namespace, from sock_diag.
pub(crate) fn list() -> io::Result<Vec<UnixSocket>> {
    dump(netns::own().unwrap_or(0))
}

/// The Unix sockets of every network namespace.
pub(crate) struct AllSockets {
    pub(crate) sockets: Vec<UnixSocket>,
    /// The namespaces whose sockets are missing, each with why.
    pub(crate) missed: Vec<(u64, io::Error)>,
}

/// Every Unix socket of the machine: udstrace's network namespace's, then those of every
/// other (as root: entering a namespace needs CAP_SYS_ADMIN). An error only when udstrace's
/// own namespace cannot be listed.
pub(crate) fn list_all() -> io::Result<AllSockets> {
    let own = netns::own()?;
    let mut sockets = dump(own)?;
    let others = netns::others(own);
    let mut missed = Vec::new();
    for (ns, found) in others.iter().zip(netns::in_each(&others, dump)) {
        match found.and_then(|dumped| dumped) {
            Ok(found) => sockets.extend(found),
            Err(e) => missed.push((ns.ino, e)),
        }
    }
    Ok(AllSockets { sockets, missed })
}

/// The sockets of every network namespace bound to the socket file at `path` (as the host
/// sees it), whatever name they were bound with in their own mount namespace (a container's
/// `/run/app.sock`): listeners, datagram sockets, and the connections accepted from them.
/// An error when `path` is not a socket file.
pub(crate) fn sockets_of_file(path: &Path) -> Result<Vec<UnixSocket>, String> {
    let id = FileId::of_socket_file(path)?;
    let all = list_all().map_err(|e| format!("sock_diag: {e}"))?;
    Ok(all
        .sockets
        .into_iter()
        .filter(|s| s.file == Some(id))
        .collect())
}

/// Every Unix socket of the network namespace the calling thread is in, labelled `netns`.
fn dump(netns: u64) -> io::Result<Vec<UnixSocket>> {
    let fd = sys::netlink_socket(NETLINK_SOCK_DIAG)?;

    // nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[16] = libc::AF_UNIX as u8;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req[28..32]
        .copy_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER).to_ne_bytes());
    req[32..40].fill(0xff); // no cookie
    sys::send(&fd, &req)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sys::recv(&fd, &mut buf)?;
        let mut rest = &buf[..n];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4")) as usize;
            let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2"));
            if len < 16 || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated netlink message",
                ));
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => return Err(io::Error::other("sock_diag refused the request")),
                _ => {
                    if let Some(s) = parse_diag(&rest[16..len], netns) {
                        out.push(s);
                    }
                }
            }
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        }
    }
}

/// One `unix_diag_msg` with its attributes.
fn parse_diag(m: &[u8], netns: u64) -> Option<UnixSocket> {
    if m.len() < 16 {
        return None;
    }
    let mut s = UnixSocket {
        ino: u64::from(u32::from_ne_bytes(m[4..8].try_into().ok()?)),
        sock_type: SockType::from_raw(u16::from(m[1])),
        state: m[2],
        name: Vec::new(),
        peer: 0,
        file: None,
        netns,
    };
    let mut attrs = &m[16..];
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes(attrs[0..2].try_into().ok()?));
        let kind = u16::from_ne_bytes(attrs[2..4].try_into().ok()?);
        if len < 4 || len > attrs.len() {
            break;
        }
        let value = &attrs[4..len];
        match kind {
            UNIX_DIAG_NAME => {
                // A pathname's length counts its terminating NUL; an abstract name starts
                // with NUL and is exactly its length.
                let end = if value.first() == Some(&0) {
                    value.len()
                } else {
                    value.iter().position(|&c| c == 0).unwrap_or(value.len())
                };
                s.name = value[..end].to_vec();
            }
            // struct unix_diag_vfs { u32 udiag_vfs_ino; u32 udiag_vfs_dev; }.
            UNIX_DIAG_VFS if value.len() >= 8 => {
                let ino = u32::from_ne_bytes(value[..4].try_into().ok()?);
                let dev = u32::from_ne_bytes(value[4..8].try_into().ok()?);
                s.file = Some(FileId::from_diag(dev, ino));
            }
            UNIX_DIAG_PEER if value.len() >= 4 => {
                s.peer = u64::from(u32::from_ne_bytes(value[..4].try_into().ok()?));
            }
            _ => {}
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    Some(s)
}

/// Bound name -> inode of every named Unix socket that is not a connection's end (an
/// accepted socket shows its listener's name too). Empty if sock_diag fails.
#[must_use]
pub(crate) fn bound_names() -> HashMap<Vec<u8>, u64> {
    let mut map = HashMap::new();
    for s in list().unwrap_or_default() {
        // An accepted connection reports its listener's name; the bound socket is the one
        // without a peer (or the listener).
        if !s.name.is_empty() && s.peer == 0 {
            map.insert(s.name, s.ino);
        }
    }
    map
}

/// The names that sockets bound to the socket file at `path` were bound with, in whatever
/// mount and network namespace they were bound (a container's `/run/app.sock` is, from the
/// host, some other path to the same file). An error when `path` is not a socket.
pub(crate) fn names_of_socket_file(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut names: Vec<Vec<u8>> = sockets_of_file(path)?.into_iter().map(|s| s.name).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Whether `h`'s process still has socket `ino` at the same descriptor.
#[must_use]
pub(crate) fn still_holds(h: &Holder, ino: u64) -> bool {
    std::fs::read_link(format!("/proc/{}/fd/{}", h.pid, h.fd))
        .is_ok_and(|t| t.as_os_str().as_encoded_bytes() == format!("socket:[{ino}]").as_bytes())
}

/// Which processes hold which socket inodes: every process's fd table.
#[must_use]
pub(crate) fn holders() -> HashMap<u64, Vec<Holder>> {
    let mut map: HashMap<u64, Vec<Holder>> = HashMap::new();
    let Ok(processes) = procfs::process::all_processes() else {
        return map;
    };
    for p in processes.flatten() {
        for (ino, h) in sockets_of(&p) {
            map.entry(ino).or_default().push(h);
        }
    }
    map
}

/// The sockets process `pid` holds, with the descriptor of each.
#[must_use]
pub(crate) fn process_sockets(pid: u32) -> Vec<(u64, Holder)> {
    i32::try_from(pid)
        .ok()
        .and_then(|pid| procfs::process::Process::new(pid).ok())
        .map_or_else(Vec::new, |p| sockets_of(&p))
}

fn sockets_of(p: &procfs::process::Process) -> Vec<(u64, Holder)> {
    let Ok(fds) = p.fd() else {
        return Vec::new();
    };
    let comm = p.stat().map(|s| s.comm).unwrap_or_default();
    let pid = u32::try_from(p.pid).unwrap_or(0);
    fds.flatten()
        .filter_map(|fd| match fd.target {
            procfs::process::FDTarget::Socket(ino) => Some((
                ino,
                Holder {
                    pid,
                    comm: comm.clone(),
                    fd: u32::try_from(fd.fd).unwrap_or(0),
                    container: String::new(),
                },
            )),
            _ => None,
        })
        .collect()
}

/// The children of process `pid`, forked by any of its threads (`/proc/PID/task/*/children`).
#[must_use]
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The parent of process `pid`.
#[must_use]
pub(crate) fn parent(pid: u32) -> Option<u32> {
    let p = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    u32::try_from(p.stat().ok()?.ppid).ok()
}

const _: () = assert!(size_of::<u32>() == 4);

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn lists_a_socketpair_with_its_peer_and_holder() {
        let (a, b) = UnixStream::pair().unwrap();
        let ino = |s: &UnixStream| {
            use std::os::unix::fs::MetadataExt;
            let fd = std::os::fd::AsFd::as_fd(s).try_clone_to_owned().unwrap();
            std::fs::File::from(fd).metadata().unwrap().ino()
        };
        let (ia, ib) = (ino(&a), ino(&b));
        let all = list().unwrap();
        let sa = all.iter().find(|s| s.ino == ia).expect("socket a listed");
        assert_eq!(sa.peer, ib);
        assert_eq!(sa.sock_type, Some(SockType::Stream));
        assert_eq!(sa.state_name(), "ESTAB");
        let h = holders();
        let me = std::process::id();
        assert!(h[&ia]
            .iter()
            .any(|x| x.pid == me && x.fd == std::os::fd::AsRawFd::as_raw_fd(&a).cast_unsigned()));
    }

    /// The kernel's `dev_t` and the C library's `st_dev` of one device (major 259, minor
    /// 70000: both wider than the old 8-bit fields) come out the same.
    #[test]
    fn device_numbers_of_both_encodings() {
        // MKDEV(259, 70000) = 259 << 20 | 70000.
        let kernel = FileId::from_diag(0x1031_1170, 5);
        // makedev(259, 70000): minor & 0xff | (major & 0xfff) << 8 | (minor & !0xff) << 12.
        let user = FileId::from_stat(0x1111_0370, 5);
        let expected = FileId {
            major: 259,
            minor: 70000,
            ino: 5,
        };
        assert_eq!(kernel, expected);
        assert_eq!(user, expected);
        assert_eq!(FileId::from_stat(libc::makedev(259, 70000), 5), expected);
        // The kernel reports the inode's low 32 bits.
        assert_eq!(FileId::from_stat(0x1111_0370, (7 << 32) | 5), expected);
        assert_eq!(FileId::from_diag(8 << 20 | 3, 1).major, 8);
    }

    /// A socket bound to a file is found by the file's identity, with its accepted
    /// connection; other files are refused with one line.
    #[test]
    fn sockets_found_by_their_file() {
        use std::os::{
            fd::AsFd,
            unix::{fs::MetadataExt, net::UnixListener},
        };
        let dir = std::env::temp_dir().join(format!("udstrace-sockfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let ino = |fd: std::os::fd::BorrowedFd<'_>| {
            std::fs::File::from(fd.try_clone_to_owned().unwrap())
                .metadata()
                .unwrap()
                .ino()
        };
        let mut found: Vec<u64> = sockets_of_file(&path)
            .unwrap()
            .iter()
            .map(|s| s.ino)
            .collect();
        found.sort_unstable();
        let mut expected = vec![ino(listener.as_fd()), ino(accepted.as_fd())];
        expected.sort_unstable();
        assert_eq!(found, expected);
        assert!(!found.contains(&ino(client.as_fd())));
        let own = netns::own().unwrap();
        assert!(list()
            .unwrap()
            .iter()
            .filter(|s| found.contains(&s.ino))
            .all(|s| s.netns == own && s.name == path.as_os_str().as_encoded_bytes()));
        assert_eq!(
            names_of_socket_file(&path).unwrap(),
            [path.as_os_str().as_encoded_bytes()]
        );
        let file = dir.join("plain");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(
            sockets_of_file(&file).unwrap_err(),
            format!("{} is not a socket", file.display())
        );
        assert!(sockets_of_file(&dir.join("none"))
            .unwrap_err()
            .contains("No such file"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
