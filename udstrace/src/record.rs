//! Decoding of the records the kernel programs write: the one place that reads kernel bytes.
//!
//! A record is a [`udstrace_common::SendRecord`] header followed by payload, or an
//! [`udstrace_common::AncillaryRecord`] (a message's control data). Nothing here
//! trusts the bytes: every length is checked against the buffer and the format's limits, and
//! a malformed record is an error value, never a panic. Fields are read one by one at their
//! `offset_of!` position, so the decoder needs no alignment and no `unsafe`.

use std::mem::offset_of;

use udstrace_common::{
    record::{
        flags, ANCILLARY_RECORD_LEN, COMM_LEN, CONTROL_MAX, FDS_MAX, FD_DIRS, FD_DIR_MAX,
        FD_NAME_MAX, KIND_ANCILLARY, KIND_SEND, PATH_MAX, SEGMENT_MAX, SEND_RECORD_LEN,
    },
    AncillaryRecord, FdInfo, SendRecord, SockType,
};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
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
}

/// One decoded record: a segment of a message sent on a Unix socket, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSegment<'a> {
    pub flags: u32,
    pub ts_boot_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub sock_ino: u64,
    pub peer_ino: u64,
    pub sock_id: u64,
    pub peer_id: u64,
    pub stream_offset: u64,
    pub msg_len: u64,
    pub seg_offset: u64,
    pub lost_segments: u64,
    pub syscall: i32,
    pub sock_type: SockType,
    /// Command name without its NUL padding.
    pub comm: &'a [u8],
    /// Bound name of the sending socket; abstract names start with a NUL byte.
    pub path: &'a [u8],
    pub peer_path: &'a [u8],
    pub payload: &'a [u8],
}

impl SendSegment<'_> {
    /// Whether this records a receive (`--recv`) rather than a send.
    #[must_use]
    pub fn is_recv(&self) -> bool {
        self.flags & flags::RECV != 0
    }

    /// Whether this is the last record of its message.
    #[must_use]
    pub fn is_last(&self) -> bool {
        self.flags & flags::LAST != 0
    }

    /// Payload bytes of the segment this record covers, captured or not.
    #[must_use]
    pub fn seg_len(&self) -> u64 {
        (self.msg_len - self.seg_offset).min(u64::from(SEGMENT_MAX))
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
        Ok(SendSegment {
            flags: u32_at(b, offset_of!(SendRecord, flags)),
            ts_boot_ns: u64_at(b, offset_of!(SendRecord, ts_boot_ns)),
            pid: u32_at(b, offset_of!(SendRecord, pid)),
            tid: u32_at(b, offset_of!(SendRecord, tid)),
            uid: u32_at(b, offset_of!(SendRecord, uid)),
            gid: u32_at(b, offset_of!(SendRecord, gid)),
            sock_ino: u64_at(b, offset_of!(SendRecord, sock_ino)),
            peer_ino: u64_at(b, offset_of!(SendRecord, peer_ino)),
            sock_id: u64_at(b, offset_of!(SendRecord, sock_id)),
            peer_id: u64_at(b, offset_of!(SendRecord, peer_id)),
            stream_offset: u64_at(b, offset_of!(SendRecord, stream_offset)),
            msg_len,
            seg_offset,
            lost_segments: u64_at(b, offset_of!(SendRecord, lost_segments)),
            syscall: u32_at(b, offset_of!(SendRecord, syscall)).cast_signed(),
            sock_type: SockType::from_raw(raw_type).ok_or(DecodeError::SockType(raw_type))?,
            comm: trim_nul(&b[comm_off..comm_off + COMM_LEN]),
            path: path(
                offset_of!(SendRecord, path_len),
                offset_of!(SendRecord, path),
            )?,
            peer_path: path(
                offset_of!(SendRecord, peer_path_len),
                offset_of!(SendRecord, peer_path),
            )?,
            payload: &body[..cap_len as usize],
        })
    }
}

/// A passed descriptor (`SCM_RIGHTS`) as the kernel program resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedFd {
    /// The descriptor number in the sender.
    pub fd: i32,
    /// `i_mode` of the file (type and permissions); 0 when the kernel could not resolve it.
    pub mode: u16,
    /// Device of the file system (`st_dev` split as major, minor).
    pub dev_major: u32,
    pub dev_minor: u32,
    pub ino: u64,
    /// The file's dentry name (last path component; empty for pipes and sockets).
    pub name: Vec<u8>,
    /// The directories above it, parent first.
    pub dirs: Vec<Vec<u8>>,
    /// `dirs` reach the root of the file system.
    pub at_root: bool,
}

/// A decoded [`AncillaryRecord`]: the control data of the next message the thread sends on
/// the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancillary {
    pub pid: u32,
    pub tid: u32,
    pub sock_id: u64,
    /// Bytes of control data the message had (`control` may hold fewer).
    pub control_len: u32,
    pub control: Vec<u8>,
    pub fds: Vec<PassedFd>,
}

/// One control message of a message's control data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// `SCM_RIGHTS`: descriptor numbers in the sender.
    Rights(Vec<i32>),
    /// `SCM_CREDENTIALS`: `struct ucred`.
    Credentials { pid: i32, uid: u32, gid: u32 },
    /// Anything else, by level, type and data length.
    Other { level: i32, kind: i32, len: usize },
}

/// `struct cmsghdr` (`x86_64`): `size_t cmsg_len; int cmsg_level; int cmsg_type;`.
const CMSG_HDR: usize = 16;
const SOL_SOCKET: i32 = 1;
const SCM_RIGHTS: i32 = 1;
const SCM_CREDENTIALS: i32 = 2;

/// The control messages in `control` (as `CMSG_FIRSTHDR`/`CMSG_NXTHDR` walk them); stops
/// at the first header that does not fit, so cut control data gives the messages before the
/// cut.
#[must_use]
pub fn control_messages(control: &[u8]) -> Vec<ControlMessage> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + CMSG_HDR <= control.len() {
        let len = u64_at(control, off);
        let Ok(len) = usize::try_from(len) else {
            break;
        };
        if len < CMSG_HDR || len > control.len() - off {
            break;
        }
        let level = u32_at(control, off + 8).cast_signed();
        let kind = u32_at(control, off + 12).cast_signed();
        let data = &control[off + CMSG_HDR..off + len];
        out.push(match (level, kind) {
            (SOL_SOCKET, SCM_RIGHTS) => ControlMessage::Rights(
                data.chunks_exact(4)
                    .map(|c| u32_at(c, 0).cast_signed())
                    .collect(),
            ),
            (SOL_SOCKET, SCM_CREDENTIALS) if data.len() >= 12 => ControlMessage::Credentials {
                pid: u32_at(data, 0).cast_signed(),
                uid: u32_at(data, 4),
                gid: u32_at(data, 8),
            },
            _ => ControlMessage::Other {
                level,
                kind,
                len: data.len(),
            },
        });
        off += len.div_ceil(8) * 8;
    }
    out
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
pub enum Record<'a> {
    Send(SendSegment<'a>),
    Ancillary(Ancillary),
}

impl<'a> TryFrom<&'a [u8]> for Record<'a> {
    type Error = DecodeError;

    fn try_from(b: &'a [u8]) -> Result<Self, DecodeError> {
        if b.len() < 2 {
            return Err(DecodeError::Short(b.len()));
        }
        if u16_at(b, 0) == KIND_ANCILLARY {
            Ancillary::try_from(b).map(Record::Ancillary)
        } else {
            SendSegment::try_from(b).map(Record::Send)
        }
    }
}

/// Builds raw records the way the kernel programs do; for tests of everything downstream.
#[cfg(test)]
pub mod testing {
    use super::{offset_of, SendRecord, KIND_SEND, SEND_RECORD_LEN};

    /// Fields of a record to encode; payload follows.
    #[derive(Clone, Debug)]
    pub struct RawRecord {
        pub flags: u32,
        pub ts_boot_ns: u64,
        pub pid: u32,
        pub tid: u32,
        pub sock_ino: u64,
        pub peer_ino: u64,
        pub sock_id: Option<u64>,
        pub peer_id: Option<u64>,
        pub stream_offset: u64,
        pub msg_len: u64,
        pub seg_offset: u64,
        pub lost_segments: u64,
        pub sock_type: u16,
        pub comm: &'static [u8],
        pub path: &'static [u8],
        pub peer_path: &'static [u8],
        pub payload: Vec<u8>,
    }

    impl Default for RawRecord {
        fn default() -> Self {
            Self {
                flags: udstrace_common::record::flags::LAST,
                ts_boot_ns: 1_000_000_000,
                pid: 100,
                tid: 101,
                sock_ino: 5000,
                peer_ino: 5001,
                sock_id: None,
                peer_id: None,
                stream_offset: 0,
                msg_len: 5,
                seg_offset: 0,
                lost_segments: 0,
                sock_type: 1,
                comm: b"client",
                path: b"",
                peer_path: b"/run/test.sock",
                payload: b"hello".to_vec(),
            }
        }
    }

    impl RawRecord {
        #[must_use]
        pub fn encode(&self) -> Vec<u8> {
            let mut b = vec![0u8; SEND_RECORD_LEN];
            let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
            put(offset_of!(SendRecord, kind), &KIND_SEND.to_ne_bytes());
            put(
                offset_of!(SendRecord, header_len),
                &(SEND_RECORD_LEN as u16).to_ne_bytes(),
            );
            put(offset_of!(SendRecord, flags), &self.flags.to_ne_bytes());
            put(
                offset_of!(SendRecord, ts_boot_ns),
                &self.ts_boot_ns.to_ne_bytes(),
            );
            put(offset_of!(SendRecord, pid), &self.pid.to_ne_bytes());
            put(offset_of!(SendRecord, tid), &self.tid.to_ne_bytes());
            put(offset_of!(SendRecord, uid), &1000u32.to_ne_bytes());
            put(offset_of!(SendRecord, gid), &1001u32.to_ne_bytes());
            put(
                offset_of!(SendRecord, sock_ino),
                &self.sock_ino.to_ne_bytes(),
            );
            put(
                offset_of!(SendRecord, peer_ino),
                &self.peer_ino.to_ne_bytes(),
            );
            // Kernel identities: as given, or stand-ins derived from the inodes.
            let derive = |ino: u64| {
                if ino == 0 {
                    0
                } else {
                    ino | 0xffff_0000_0000_0000
                }
            };
            let sock_id = self.sock_id.unwrap_or(derive(self.sock_ino));
            let peer_id = self.peer_id.unwrap_or(derive(self.peer_ino));
            put(offset_of!(SendRecord, sock_id), &sock_id.to_ne_bytes());
            put(offset_of!(SendRecord, peer_id), &peer_id.to_ne_bytes());
            put(
                offset_of!(SendRecord, stream_offset),
                &self.stream_offset.to_ne_bytes(),
            );
            put(offset_of!(SendRecord, msg_len), &self.msg_len.to_ne_bytes());
            put(
                offset_of!(SendRecord, seg_offset),
                &self.seg_offset.to_ne_bytes(),
            );
            put(
                offset_of!(SendRecord, lost_segments),
                &self.lost_segments.to_ne_bytes(),
            );
            put(
                offset_of!(SendRecord, cap_len),
                &(self.payload.len() as u32).to_ne_bytes(),
            );
            put(offset_of!(SendRecord, syscall), &1i32.to_ne_bytes());
            put(
                offset_of!(SendRecord, sock_type),
                &self.sock_type.to_ne_bytes(),
            );
            put(
                offset_of!(SendRecord, path_len),
                &(self.path.len() as u16).to_ne_bytes(),
            );
            put(
                offset_of!(SendRecord, peer_path_len),
                &(self.peer_path.len() as u16).to_ne_bytes(),
            );
            put(offset_of!(SendRecord, comm), self.comm);
            put(offset_of!(SendRecord, path), self.path);
            put(offset_of!(SendRecord, peer_path), self.peer_path);
            b.extend_from_slice(&self.payload);
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::RawRecord, *};

    #[test]
    fn decodes_every_field() {
        let raw = RawRecord {
            path: b"\0abstract\0",
            peer_path: b"/run/test.sock\0",
            ..RawRecord::default()
        };
        let bytes = raw.encode();
        let s = SendSegment::try_from(bytes.as_slice()).unwrap();
        assert_eq!(s.pid, 100);
        assert_eq!(s.tid, 101);
        assert_eq!(s.uid, 1000);
        assert_eq!(s.gid, 1001);
        assert_eq!(s.sock_ino, 5000);
        assert_eq!(s.peer_ino, 5001);
        assert_eq!(s.msg_len, 5);
        assert_eq!(s.syscall, 1);
        assert_eq!(s.sock_type, SockType::Stream);
        assert_eq!(s.comm, b"client");
        assert_eq!(s.path, b"\0abstract\0", "abstract names keep every byte");
        assert_eq!(s.peer_path, b"/run/test.sock");
        assert_eq!(s.payload, b"hello");
        assert!(s.is_last());
        assert_eq!(s.seg_len(), 5);
    }

    #[test]
    fn rejects_short_and_unknown() {
        let bytes = RawRecord::default().encode();
        assert_eq!(
            SendSegment::try_from(&bytes[..10]),
            Err(DecodeError::Short(10))
        );
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(
            SendSegment::try_from(bad.as_slice()),
            Err(DecodeError::Kind(9))
        );
        let bad = RawRecord {
            sock_type: 3,
            ..RawRecord::default()
        }
        .encode();
        assert_eq!(
            SendSegment::try_from(bad.as_slice()),
            Err(DecodeError::SockType(3))
        );
    }

    #[test]
    fn rejects_payload_beyond_buffer_or_message() {
        let bytes = RawRecord::default().encode();
        let cut = &bytes[..bytes.len() - 1];
        assert!(matches!(
            SendSegment::try_from(cut),
            Err(DecodeError::Payload { .. })
        ));
        let bytes = RawRecord {
            msg_len: 3,
            ..RawRecord::default()
        }
        .encode();
        assert!(matches!(
            SendSegment::try_from(bytes.as_slice()),
            Err(DecodeError::Segment { .. })
        ));
        let bytes = RawRecord {
            seg_offset: 7,
            msg_len: 100,
            ..RawRecord::default()
        }
        .encode();
        assert!(matches!(
            SendSegment::try_from(bytes.as_slice()),
            Err(DecodeError::Segment { .. })
        ));
    }

    #[test]
    fn rejects_oversized_path() {
        let mut bytes = RawRecord::default().encode();
        let off = offset_of!(SendRecord, path_len);
        bytes[off..off + 2].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(
            SendSegment::try_from(bytes.as_slice()),
            Err(DecodeError::PathLen(200))
        );
    }

    #[test]
    fn empty_datagram_is_valid() {
        let bytes = RawRecord {
            msg_len: 0,
            payload: vec![],
            sock_type: 2,
            ..RawRecord::default()
        }
        .encode();
        let s = SendSegment::try_from(bytes.as_slice()).unwrap();
        assert_eq!(s.seg_len(), 0);
        assert!(s.payload.is_empty());
    }

    #[test]
    fn last_segment_length() {
        let msg_len = u64::from(SEGMENT_MAX) * 2 + 10;
        let bytes = RawRecord {
            msg_len,
            seg_offset: u64::from(SEGMENT_MAX) * 2,
            payload: vec![7; 10],
            ..RawRecord::default()
        }
        .encode();
        let s = SendSegment::try_from(bytes.as_slice()).unwrap();
        assert_eq!(s.seg_len(), 10);
    }

    /// Control data as `sendmsg` callers build it: a `cmsghdr` and its data, padded to 8.
    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(16 + data.len() as u64).to_ne_bytes());
        b.extend_from_slice(&level.to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(data);
        b.resize(b.len().div_ceil(8) * 8, 0);
        b
    }

    #[test]
    fn control_messages_rights_credentials_other_and_cuts() {
        let fds: Vec<u8> = [3i32, 7, 9].iter().flat_map(|f| f.to_ne_bytes()).collect();
        let cred: Vec<u8> = [1234u32, 1000, 100]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let mut control = cmsg(1, 1, &fds);
        control.extend(cmsg(1, 2, &cred));
        control.extend(cmsg(41, 50, &[1, 2, 3, 4, 5]));
        assert_eq!(
            control_messages(&control),
            vec![
                ControlMessage::Rights(vec![3, 7, 9]),
                ControlMessage::Credentials {
                    pid: 1234,
                    uid: 1000,
                    gid: 100
                },
                ControlMessage::Other {
                    level: 41,
                    kind: 50,
                    len: 5
                },
            ]
        );
        // Cut inside the second message: only the first one.
        assert_eq!(
            control_messages(&control[..40]),
            vec![ControlMessage::Rights(vec![3, 7, 9])]
        );
        // A header claiming less than itself ends the walk.
        let mut bad = control.clone();
        bad[..8].copy_from_slice(&8u64.to_ne_bytes());
        assert!(control_messages(&bad).is_empty());
        assert!(control_messages(&[]).is_empty());
    }

    fn ancillary_bytes(nfds: u32, cap_len: u32) -> Vec<u8> {
        let mut b = vec![0u8; ANCILLARY_RECORD_LEN];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(
            offset_of!(AncillaryRecord, kind),
            &KIND_ANCILLARY.to_ne_bytes(),
        );
        put(
            offset_of!(AncillaryRecord, header_len),
            &(ANCILLARY_RECORD_LEN as u16).to_ne_bytes(),
        );
        put(offset_of!(AncillaryRecord, pid), &10u32.to_ne_bytes());
        put(offset_of!(AncillaryRecord, tid), &11u32.to_ne_bytes());
        put(
            offset_of!(AncillaryRecord, sock_id),
            &0xabcdu64.to_ne_bytes(),
        );
        put(
            offset_of!(AncillaryRecord, control_len),
            &600u32.to_ne_bytes(),
        );
        put(offset_of!(AncillaryRecord, cap_len), &cap_len.to_ne_bytes());
        put(offset_of!(AncillaryRecord, nfds), &nfds.to_ne_bytes());
        let fd0 = offset_of!(AncillaryRecord, fds);
        put(fd0 + offset_of!(FdInfo, fd), &5i32.to_ne_bytes());
        put(fd0 + offset_of!(FdInfo, mode), &0o100_644u16.to_ne_bytes());
        put(fd0 + offset_of!(FdInfo, name_len), &4u16.to_ne_bytes());
        put(
            fd0 + offset_of!(FdInfo, dev),
            &((8u32 << 20) | 3).to_ne_bytes(),
        );
        put(fd0 + offset_of!(FdInfo, ino), &777u64.to_ne_bytes());
        put(fd0 + offset_of!(FdInfo, name), b"x.db");
        put(fd0 + offset_of!(FdInfo, depth), &[2]);
        put(fd0 + offset_of!(FdInfo, at_root), &[1]);
        put(fd0 + offset_of!(FdInfo, dirs), b"data\0");
        put(fd0 + offset_of!(FdInfo, dirs) + FD_DIR_MAX, b"var\0");
        put(offset_of!(AncillaryRecord, control), &[9; CONTROL_MAX]);
        b
    }

    #[test]
    fn decodes_ancillary_records() {
        let bytes = ancillary_bytes(1, 512);
        let Ok(Record::Ancillary(a)) = Record::try_from(bytes.as_slice()) else {
            panic!("not an ancillary record");
        };
        assert_eq!(
            (a.pid, a.tid, a.sock_id, a.control_len),
            (10, 11, 0xabcd, 600)
        );
        assert_eq!(a.control.len(), 512);
        assert_eq!(
            a.fds,
            vec![PassedFd {
                fd: 5,
                mode: 0o100_644,
                dev_major: 8,
                dev_minor: 3,
                ino: 777,
                name: b"x.db".to_vec(),
                dirs: vec![b"data".to_vec(), b"var".to_vec()],
                at_root: true,
            }]
        );
        assert_eq!(
            Ancillary::try_from(&bytes[..100]),
            Err(DecodeError::Short(100))
        );
        assert_eq!(
            Ancillary::try_from(ancillary_bytes(17, 0).as_slice()),
            Err(DecodeError::Fds(17))
        );
        assert!(matches!(
            Ancillary::try_from(ancillary_bytes(0, 513).as_slice()),
            Err(DecodeError::Payload { cap_len: 513, .. })
        ));
        // A send record still decodes through Record.
        let send = RawRecord::default().encode();
        assert!(matches!(
            Record::try_from(send.as_slice()),
            Ok(Record::Send(_))
        ));
    }
}
