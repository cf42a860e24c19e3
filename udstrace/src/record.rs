//! Decoding of the records the kernel programs write: the one place that reads kernel bytes.
//!
//! A record is a [`udstrace_common::SendRecord`] header followed by payload. Nothing here
//! trusts the bytes: every length is checked against the buffer and the format's limits, and
//! a malformed record is an error value, never a panic. Fields are read one by one at their
//! `offset_of!` position, so the decoder needs no alignment and no `unsafe`.

use std::mem::offset_of;

use udstrace_common::{
    record::{flags, COMM_LEN, KIND_SEND, PATH_MAX, SEGMENT_MAX, SEND_RECORD_LEN},
    SendRecord, SockType,
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

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

impl<'a> TryFrom<&'a [u8]> for SendSegment<'a> {
    type Error = DecodeError;

    fn try_from(b: &'a [u8]) -> Result<Self, DecodeError> {
        if b.len() < SEND_RECORD_LEN {
            return Err(DecodeError::Short(b.len()));
        }
        let kind = u16_at(b, offset_of!(SendRecord, kind));
        if kind != KIND_SEND {
            return Err(DecodeError::Kind(kind));
        }
        let header_len = u16_at(b, offset_of!(SendRecord, header_len));
        if usize::from(header_len) < SEND_RECORD_LEN || usize::from(header_len) > b.len() {
            return Err(DecodeError::HeaderLen(header_len));
        }
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
}
