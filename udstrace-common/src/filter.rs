//! Bits of the kernel programs' `FILTERS` global (which filters userspace turned on), and the
//! keys of the filter maps that are more than a number.

use crate::record::PATH_MAX;

/// Only processes in `PID_FILTER`.
pub const PIDS: u32 = 1;
/// Only command names in `COMM_FILTER`.
pub const COMMS: u32 = 2;
/// Only users in `UID_FILTER`.
pub const UIDS: u32 = 4;
/// Children of processes in `PID_FILTER` are added to it when they are forked.
pub const FOLLOW: u32 = 8;
/// Only senders (for a receive, readers) whose cgroup (v2) id is in `CGROUP_FILTER`.
pub const CGROUPS: u32 = 16;
/// Only sockets that have a peer when the socket's or its peer's bound file is in
/// `PATH_FILTER`, or its or its peer's bound name is in `PATH_NAME_FILTER`; a socket without
/// peer (an unconnected datagram socket) is left to userspace, which matches names.
pub const PATHS: u32 = 32;
/// Only the processes of the `PID_LIST` global (instead of `PID_FILTER`): up to
/// [`PID_LIST_MAX`] processes without `FOLLOW`, checked with no map lookup, so that traffic
/// left out costs its sender as little as possible.
pub const PID_LIST: u32 = 64;
/// Entries of the `PID_LIST` global.
pub const PID_LIST_MAX: usize = 8;

/// A socket file's identity: the file system's device as the kernel encodes it
/// (`major << 20 | minor`, the `s_dev` of its super block) and the inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathKey {
    pub dev: u32,
    /// Explicit padding; zero.
    pub pad: u32,
    pub ino: u64,
}

impl PathKey {
    /// The identity of inode `ino` on device `major:minor`.
    #[must_use]
    pub const fn new(major: u32, minor: u32, ino: u64) -> Self {
        Self {
            dev: (major << 20) | (minor & 0xf_ffff),
            pad: 0,
            ino,
        }
    }
}

/// A socket's bound name as the kernel keeps it (`unix_address.name.sun_path`, cut at
/// [`PATH_MAX`]): a pathname with its terminating NUL, an abstract name with its leading
/// NUL; `len` bytes used, the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PathName {
    pub len: u32,
    pub name: [u8; PATH_MAX],
}

impl PathName {
    /// No name.
    pub const ZERO: Self = Self {
        len: 0,
        name: [0; PATH_MAX],
    };

    /// The key of a name as users write it: `@name` for an abstract name, else a path.
    /// `None` for a name no socket can be bound to (empty, or longer than `sun_path`).
    #[must_use]
    pub fn from_user(text: &[u8]) -> Option<Self> {
        let mut key = Self::ZERO;
        let len = if let Some(rest) = text.strip_prefix(b"@") {
            // An abstract name: a NUL, then the name, exactly its length.
            if rest.len() + 1 > PATH_MAX {
                return None;
            }
            key.name[1..=rest.len()].copy_from_slice(rest);
            rest.len() + 1
        } else {
            // A pathname holds no NUL; the kernel counts its terminating one, which the cut
            // at sun_path's size may leave out.
            if text.is_empty() || text.len() > PATH_MAX || text.contains(&0) {
                return None;
            }
            key.name[..text.len()].copy_from_slice(text);
            (text.len() + 1).min(PATH_MAX)
        };
        key.len = len as u32;
        Some(key)
    }
}

#[cfg(feature = "user")]
// SAFETY: u32 and u64 fields with explicit padding: no implicit padding, every bit pattern
// valid.
unsafe impl aya::Pod for PathKey {}

#[cfg(feature = "user")]
// SAFETY: a u32 and bytes (4 + 108, a multiple of the alignment): no padding, every bit
// pattern valid.
unsafe impl aya::Pod for PathName {}

const _: () = assert!(core::mem::size_of::<PathKey>() == 16);
const _: () = assert!(core::mem::size_of::<PathName>() == 4 + PATH_MAX);
