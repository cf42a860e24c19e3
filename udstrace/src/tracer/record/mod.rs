//! Decoding of the records the kernel programs write: the one place that reads kernel bytes.
//!
//! A record is a [`udstrace_common::SendRecord`] header followed by payload, or an
//! [`udstrace_common::AncillaryRecord`] (a message's control data). Nothing here
//! trusts the bytes: every length is checked against the buffer and the format's limits, and
//! a malformed record is an error value, never a panic. Fields are read one by one at their
//! `offset_of!` position, so the decoder needs no alignment and no `unsafe`.

use std::{borrow::Cow, mem::offset_of};

use udstrace_common::{
    record::{
        flags, receiver, ANCILLARY_RECORD_LEN, CGROUP_PATH_MAX, CGROUP_RECORD_LEN, COMM_LEN,
        CONTROL_MAX, FDS_MAX, FD_DIRS, FD_DIR_MAX, FD_NAME_MAX, KIND_ANCILLARY, KIND_CGROUP,
        KIND_SEND, PATH_MAX, SEGMENT_MAX, SEND_RECORD_LEN,
    },
    AncillaryRecord, CgroupRecord, FdInfo, SendRecord, SockType,
};

use crate::{
    kernel::arch::Arch,
    packet::{Bytes, Dir, Meta, PeerBy, Syscall},
};

/// udstrace's number (`Syscall`'s) of the running architecture's system call `nr`.
fn own_syscall(nr: i32) -> i32 {
    Arch::running().map_or(nr, |arch| arch.canonical(nr))
}

mod control;
pub(crate) use control::{control_messages, ControlMessage};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    Kind(u16),
    #[error("header length {0} is smaller than this version's header")]
    HeaderLen(u16),
    #[error("payload of {cap_len} bytes does not fit the {available} bytes after the header")]
    Payload { cap_len: u32, available: usize },
    #[error("segment at {seg_offset} of {cap_len} bytes lies outside its {msg_len}-byte message")]
    Segment {
        seg_offset: u64,
        cap_len: u32,
        msg_len: u64,
    },
    #[error("path length {0} exceeds {PATH_MAX}")]
    PathLen(u16),
    #[error("unknown socket type {0}")]
    SockType(u16),
    #[error("{0} passed descriptors exceed {FDS_MAX}")]
    Fds(u32),
    #[error("cgroup path length {0} exceeds {CGROUP_PATH_MAX}")]
    CgroupPathLen(u32),
}

/// One decoded record: a segment of a message sent (or, with `--recv`, read) on a Unix
/// socket, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendSegment<'a> {
    /// What the record says of the sender and the two sockets: the packet fields the kernel
    /// supplies (the rest are left at their defaults for the packetizer).
    pub(crate) meta: Meta<'a>,
    pub(crate) flags: u32,
    pub(crate) ts_boot_ns: u64,
    /// Kernel identities of the socket and its peer (`struct sock` addresses).
    pub(crate) sock_id: u64,
    pub(crate) peer_id: u64,
    pub(crate) stream_offset: u64,
    pub(crate) seg_offset: u64,
    pub(crate) lost_segments: u64,
    /// The process the kernel knew would read the message when it was sent, if it did.
    pub(crate) receiver: Option<Receiver<'a>>,
    pub(crate) payload: &'a [u8],
}

/// The receiving process as the kernel named it (`SendRecord::receiver_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receiver<'a> {
    pub(crate) pid: u32,
    /// Empty when the kernel could not read it.
    pub(crate) comm: &'a [u8],
    pub(crate) cgroup: Option<u64>,
    /// `Sent`, `Read` or `Cred`.
    pub(crate) by: PeerBy,
}

impl SendSegment<'_> {
    /// Whether this is the last record of its message.
    #[must_use]
    pub(crate) fn is_last(&self) -> bool {
        self.flags & flags::LAST != 0
    }

    /// Payload bytes of the segment this record covers, captured or not.
    #[must_use]
    pub(crate) fn seg_len(&self) -> u64 {
        (self.meta.msg_len - self.seg_offset).min(u64::from(SEGMENT_MAX))
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Checks the start every record kind shares (`kind: u16`, `header_len: u16`) against the
/// expected kind and this version's header size; returns `header_len`.
fn check_header(b: &[u8], kind: u16, len: usize) -> Result<u16, DecodeError> {
    if b.len() < len {
        return Err(DecodeError::Short(b.len()));
    }
    let found = u16_at(b, offset_of!(SendRecord, kind));
    if found != kind {
        return Err(DecodeError::Kind(found));
    }
    let header_len = u16_at(b, offset_of!(SendRecord, header_len));
    if usize::from(header_len) < len || usize::from(header_len) > b.len() {
        return Err(DecodeError::HeaderLen(header_len));
    }
    Ok(header_len)
}

const _: () = assert!(
    offset_of!(SendRecord, kind) == offset_of!(AncillaryRecord, kind)
        && offset_of!(SendRecord, header_len) == offset_of!(AncillaryRecord, header_len)
        && offset_of!(SendRecord, kind) == offset_of!(CgroupRecord, kind)
        && offset_of!(SendRecord, header_len) == offset_of!(CgroupRecord, header_len)
);

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

impl<'a> TryFrom<&'a [u8]> for SendSegment<'a> {
    type Error = DecodeError;

    fn try_from(b: &'a [u8]) -> Result<Self, DecodeError> {
        let header_len = check_header(b, KIND_SEND, SEND_RECORD_LEN)?;
        let body = &b[usize::from(header_len)..];
        let cap_len = u32_at(b, offset_of!(SendRecord, cap_len));
        if cap_len > SEGMENT_MAX || cap_len as usize > body.len() {
            return Err(DecodeError::Payload {
                cap_len,
                available: body.len(),
            });
        }
        let msg_len = u64_at(b, offset_of!(SendRecord, msg_len));
        let seg_offset = u64_at(b, offset_of!(SendRecord, seg_offset));
        if seg_offset
            .checked_add(u64::from(cap_len))
            .is_none_or(|end| end > msg_len)
            || !seg_offset.is_multiple_of(u64::from(SEGMENT_MAX))
            || (seg_offset >= msg_len && msg_len != 0)
        {
            return Err(DecodeError::Segment {
                seg_offset,
                cap_len,
                msg_len,
            });
        }
        let path = |len_off: usize, data_off: usize| -> Result<&'a [u8], DecodeError> {
            let len = u16_at(b, len_off);
            if usize::from(len) > PATH_MAX {
                return Err(DecodeError::PathLen(len));
            }
            let name = &b[data_off..data_off + usize::from(len)];
            // A pathname's length counts its terminating NUL; an abstract name (leading NUL)
            // is exactly its length.
            Ok(if name.first() == Some(&0) {
                name
            } else {
                trim_nul(name)
            })
        };
        let raw_type = u16_at(b, offset_of!(SendRecord, sock_type));
        let comm_off = offset_of!(SendRecord, comm);
        let record_flags = u32_at(b, offset_of!(SendRecord, flags));
        let receiver_comm = offset_of!(SendRecord, receiver_comm);
        let receiver_pid = u32_at(b, offset_of!(SendRecord, receiver_pid));
        let receiver = match u16_at(b, offset_of!(SendRecord, receiver_by)) {
            receiver::SENT => Some(PeerBy::Sent),
            receiver::READ => Some(PeerBy::Read),
            receiver::CRED => Some(PeerBy::Cred),
            // Unknown, or a source of a later version.
            _ => None,
        }
        .filter(|_| receiver_pid != 0)
        .map(|by| Receiver {
            pid: receiver_pid,
            comm: trim_nul(&b[receiver_comm..receiver_comm + COMM_LEN]),
            cgroup: Some(u64_at(b, offset_of!(SendRecord, receiver_cgroup_id)))
                .filter(|&id| id != 0),
            by,
        });
        Ok(SendSegment {
            meta: Meta {
                pid: u32_at(b, offset_of!(SendRecord, pid)),
                tid: u32_at(b, offset_of!(SendRecord, tid)),
                comm: Bytes(Cow::Borrowed(trim_nul(&b[comm_off..comm_off + COMM_LEN]))),
                uid: u32_at(b, offset_of!(SendRecord, uid)),
                gid: u32_at(b, offset_of!(SendRecord, gid)),
                cgroup: Some(u64_at(b, offset_of!(SendRecord, cgroup_id))).filter(|&id| id != 0),
                sock_type: SockType::from_raw(raw_type).ok_or(DecodeError::SockType(raw_type))?,
                ino: u64_at(b, offset_of!(SendRecord, sock_ino)),
                peer_ino: u64_at(b, offset_of!(SendRecord, peer_ino)),
                path: Bytes(Cow::Borrowed(path(
                    offset_of!(SendRecord, path_len),
                    offset_of!(SendRecord, path),
                )?)),
                peer_path: Bytes(Cow::Borrowed(path(
                    offset_of!(SendRecord, peer_path_len),
                    offset_of!(SendRecord, peer_path),
                )?)),
                syscall: Syscall(own_syscall(
                    u32_at(b, offset_of!(SendRecord, syscall)).cast_signed(),
                )),
                msg_len,
                dir: if record_flags & flags::RECV == 0 {
                    Dir::Send
                } else {
                    Dir::Recv
                },
                ..Meta::default()
            },
            flags: record_flags,
            ts_boot_ns: u64_at(b, offset_of!(SendRecord, ts_boot_ns)),
            sock_id: u64_at(b, offset_of!(SendRecord, sock_id)),
            peer_id: u64_at(b, offset_of!(SendRecord, peer_id)),
            stream_offset: u64_at(b, offset_of!(SendRecord, stream_offset)),
            seg_offset,
            lost_segments: u64_at(b, offset_of!(SendRecord, lost_segments)),
            receiver,
            payload: &body[..cap_len as usize],
        })
    }
}
/// A passed descriptor (`SCM_RIGHTS`) as the kernel program resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassedFd {
    /// The descriptor number in the sender.
    pub(crate) fd: i32,
    /// `i_mode` of the file (type and permissions); 0 when the kernel could not resolve it.
    pub(crate) mode: u16,
    /// Device of the file system (`st_dev` split as major, minor).
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    pub(crate) ino: u64,
    /// The file's dentry name (last path component; empty for pipes and sockets).
    pub(crate) name: Vec<u8>,
    /// The directories above it, parent first.
    pub(crate) dirs: Vec<Vec<u8>>,
    /// `dirs` reach the root of the file system.
    pub(crate) at_root: bool,
}

/// A decoded [`AncillaryRecord`]: the control data of the next message the thread sends on
/// the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ancillary {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) sock_id: u64,
    /// Bytes of control data the message had (`control` may hold fewer).
    pub(crate) control_len: u32,
    pub(crate) control: Vec<u8>,
    pub(crate) fds: Vec<PassedFd>,
}
impl TryFrom<&[u8]> for Ancillary {
    type Error = DecodeError;

    fn try_from(b: &[u8]) -> Result<Self, DecodeError> {
        check_header(b, KIND_ANCILLARY, ANCILLARY_RECORD_LEN)?;
        let cap_len = u32_at(b, offset_of!(AncillaryRecord, cap_len));
        if cap_len as usize > CONTROL_MAX {
            return Err(DecodeError::Payload {
                cap_len,
                available: CONTROL_MAX,
            });
        }
        let nfds = u32_at(b, offset_of!(AncillaryRecord, nfds));
        if nfds as usize > FDS_MAX {
            return Err(DecodeError::Fds(nfds));
        }
        let fds = (0..nfds as usize)
            .map(|i| {
                let at = offset_of!(AncillaryRecord, fds) + i * size_of::<FdInfo>();
                let name_len = usize::from(u16_at(b, at + offset_of!(FdInfo, name_len)));
                let name_at = at + offset_of!(FdInfo, name);
                let dev = u32_at(b, at + offset_of!(FdInfo, dev));
                PassedFd {
                    fd: u32_at(b, at + offset_of!(FdInfo, fd)).cast_signed(),
                    mode: u16_at(b, at + offset_of!(FdInfo, mode)),
                    // The kernel's internal dev_t: 12 bits of major, 20 of minor.
                    dev_major: dev >> 20,
                    dev_minor: dev & 0xf_ffff,
                    ino: u64_at(b, at + offset_of!(FdInfo, ino)),
                    name: b[name_at..name_at + name_len.min(FD_NAME_MAX)].to_vec(),
                    dirs: (0..usize::from(b[at + offset_of!(FdInfo, depth)]).min(FD_DIRS))
                        .map(|k| {
                            let d = at + offset_of!(FdInfo, dirs) + k * FD_DIR_MAX;
                            trim_nul(&b[d..d + FD_DIR_MAX]).to_vec()
                        })
                        .collect(),
                    at_root: b[at + offset_of!(FdInfo, at_root)] != 0,
                }
            })
            .collect();
        let control_at = offset_of!(AncillaryRecord, control);
        Ok(Ancillary {
            pid: u32_at(b, offset_of!(AncillaryRecord, pid)),
            tid: u32_at(b, offset_of!(AncillaryRecord, tid)),
            sock_id: u64_at(b, offset_of!(AncillaryRecord, sock_id)),
            control_len: u32_at(b, offset_of!(AncillaryRecord, control_len)),
            control: b[control_at..control_at + cap_len as usize].to_vec(),
            fds,
        })
    }
}

/// A decoded ring-buffer record of either kind.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one record at a time, on the stack; boxing would allocate per message"
)]
pub(crate) enum Record<'a> {
    Send(SendSegment<'a>),
    Ancillary(Ancillary),
    Cgroup(CgroupCreated<'a>),
}

/// A decoded [`udstrace_common::CgroupRecord`]: a cgroup (v2) created during the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CgroupCreated<'a> {
    pub(crate) id: u64,
    /// Its path from the root of the hierarchy, as the kernel wrote it (not checked further).
    pub(crate) path: &'a [u8],
}

impl<'a> TryFrom<&'a [u8]> for CgroupCreated<'a> {
    type Error = DecodeError;

    fn try_from(b: &'a [u8]) -> Result<Self, DecodeError> {
        check_header(b, KIND_CGROUP, CGROUP_RECORD_LEN)?;
        let len = u32_at(b, offset_of!(CgroupRecord, path_len));
        if len as usize >= CGROUP_PATH_MAX {
            return Err(DecodeError::CgroupPathLen(len));
        }
        let at = offset_of!(CgroupRecord, path);
        Ok(Self {
            id: u64_at(b, offset_of!(CgroupRecord, id)),
            path: &b[at..at + len as usize],
        })
    }
}

impl<'a> TryFrom<&'a [u8]> for Record<'a> {
    type Error = DecodeError;

    fn try_from(b: &'a [u8]) -> Result<Self, DecodeError> {
        if b.len() < 2 {
            return Err(DecodeError::Short(b.len()));
        }
        match u16_at(b, 0) {
            KIND_ANCILLARY => Ancillary::try_from(b).map(Record::Ancillary),
            KIND_CGROUP => CgroupCreated::try_from(b).map(Record::Cgroup),
            _ => SendSegment::try_from(b).map(Record::Send),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
