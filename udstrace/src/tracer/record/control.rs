//! The control messages of a message's control data (`cmsg`), as `CMSG_FIRSTHDR` and
//! `CMSG_NXTHDR` walk them.

use super::{u32_at, u64_at};

/// One control message of a message's control data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ControlMessage {
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
pub(crate) fn control_messages(control: &[u8]) -> Vec<ControlMessage> {
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
