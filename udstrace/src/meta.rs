//! Packet metadata: who sent a packet, on which socket, to which peer. Written as the
//! packet's pcapng comment, space-separated `key=value` pairs (docs/FORMAT.md), and parsed back
//! by `-r`.

use std::fmt::Write as _;

use udstrace_common::{record::flags, SockType};

use crate::{
    packet::SegmentPacket,
    record::{control_messages, Ancillary, ControlMessage, PassedFd, SendSegment},
    sockets::Holder,
};

/// Everything the text view and the comment show about one packet, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketView<'a> {
    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: &'a [u8],
    /// The processes holding the peer socket: who can read the message.
    pub peers: &'a [Holder],
    /// A receive: `pid`/`tid`/`comm` read the bytes from socket `ino`.
    pub recv: bool,
    pub sock_type: SockType,
    pub ino: u64,
    pub peer_ino: u64,
    pub path: &'a [u8],
    pub peer_path: &'a [u8],
    pub syscall: i32,
    pub msg_len: u64,
    pub seg_offset: u64,
    /// Payload bytes of the packet on the wire.
    pub orig_len: u32,
    pub payload: &'a [u8],
    /// Why the payload is shorter than `orig_len`, if it is.
    pub cut: Option<Cut>,
    /// The message's control data as comment keys (`fds=`, `cred_pid=`, ...; see
    /// [`write_ancillary`]), each preceded by a space; empty when it had none or this is not
    /// the message's first packet.
    pub ancillary: &'a str,
}

/// Why a packet carries fewer payload bytes than were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The kernel could not see the bytes (sendfile, splice, io_uring).
    Missing,
    /// Cut at the snap length.
    Snaplen,
    /// Reading the sender's memory failed.
    Fault,
    /// More iovecs than the kernel program walks.
    IovLimit,
}

impl Cut {
    fn name(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Snaplen => "snaplen",
            Self::Fault => "fault",
            Self::IovLimit => "iov-limit",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Missing, Self::Snaplen, Self::Fault, Self::IovLimit]
            .into_iter()
            .find(|c| c.name() == s)
    }

    fn from_flags(f: u32) -> Option<Self> {
        if f & flags::PAYLOAD_MISSING != 0 {
            Some(Self::Missing)
        } else if f & flags::READ_FAULT != 0 {
            Some(Self::Fault)
        } else if f & flags::IOV_LIMIT != 0 {
            Some(Self::IovLimit)
        } else if f & flags::SNAPLEN != 0 {
            Some(Self::Snaplen)
        } else {
            None
        }
    }
}

impl<'a> PacketView<'a> {
    /// The view of one packet of a decoded record.
    #[must_use]
    pub fn new(
        seg: &SendSegment<'a>,
        packet: &SegmentPacket<'a>,
        ts_ns: u64,
        peers: &'a [Holder],
        ancillary: &'a str,
    ) -> Self {
        let short = packet.payload.len() < packet.orig_len as usize;
        Self {
            ts_ns,
            pid: seg.pid,
            tid: seg.tid,
            uid: seg.uid,
            gid: seg.gid,
            comm: seg.comm,
            peers,
            recv: seg.is_recv(),
            sock_type: seg.sock_type,
            ino: seg.sock_ino,
            peer_ino: seg.peer_ino,
            path: seg.path,
            peer_path: seg.peer_path,
            syscall: seg.syscall,
            msg_len: seg.msg_len,
            seg_offset: packet.seg_offset,
            orig_len: packet.orig_len,
            payload: packet.payload,
            cut: if short {
                Cut::from_flags(seg.flags).or(Some(Cut::Snaplen))
            } else {
                None
            },
            ancillary,
        }
    }
}

/// Keys of the comment that describe control data, kept as they are by `-r`.
const ANCILLARY_KEYS: [&str; 6] = ["fds", "cred_pid", "cred_uid", "cred_gid", "cmsg", "control"];

/// Writes the comment keys of a message's control data, each preceded by a space:
/// `fds=FD:WHAT,...` for `SCM_RIGHTS` (`WHAT` from `what`, or `?` for a descriptor the
/// kernel program did not resolve), `cred_pid=`, `cred_uid=`, `cred_gid=` for
/// `SCM_CREDENTIALS`, `cmsg=LEVEL:TYPE:LEN,...` for any other control message, and
/// `control=cut:N` when the control data was longer than what was kept (`N` bytes).
pub fn write_ancillary(out: &mut String, a: &Ancillary, what: &mut dyn FnMut(&PassedFd) -> String) {
    let mut fds = Vec::new();
    let mut others = Vec::new();
    let mut resolved = a.fds.iter();
    for m in control_messages(&a.control) {
        match m {
            ControlMessage::Rights(list) => {
                for fd in list {
                    // The kernel resolved the first SCM_RIGHTS message's descriptors, in order.
                    let desc = match resolved.next() {
                        Some(p) if p.fd == fd && p.mode != 0 => what(p),
                        _ => "?".to_string(),
                    };
                    fds.push((fd, desc));
                }
                resolved = [].iter();
            }
            ControlMessage::Credentials { pid, uid, gid } => {
                let _ = write!(out, " cred_pid={pid} cred_uid={uid} cred_gid={gid}");
            }
            ControlMessage::Other { level, kind, len } => others.push((level, kind, len)),
        }
    }
    if !fds.is_empty() {
        out.push_str(" fds=");
        for (i, (fd, desc)) in fds.iter().enumerate() {
            let _ = write!(out, "{}{fd}:", if i == 0 { "" } else { "," });
            escape_with(out, desc.as_bytes(), false, b"\\=, ");
        }
    }
    if !others.is_empty() {
        out.push_str(" cmsg=");
        for (i, (level, kind, len)) in others.iter().enumerate() {
            let _ = write!(out, "{}{level}:{kind}:{len}", if i == 0 { "" } else { "," });
        }
    }
    if a.control_len as usize > a.control.len() {
        let _ = write!(out, " control=cut:{}", a.control.len());
    }
}

/// Name of an x86_64 system call that sends on a socket.
#[must_use]
pub fn syscall_name(nr: i32) -> Option<&'static str> {
    Some(match nr {
        0 => "read",
        1 => "write",
        19 => "readv",
        20 => "writev",
        40 => "sendfile",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        275 => "splice",
        295 => "preadv",
        296 => "pwritev",
        299 => "recvmmsg",
        307 => "sendmmsg",
        327 => "preadv2",
        328 => "pwritev2",
        426 => "io_uring_enter",
        _ => return None,
    })
}

fn syscall_number(name: &str) -> Option<i32> {
    (0..512).find(|&nr| syscall_name(nr) == Some(name))
}

/// Appends `bytes` as a comment value: printable ASCII as is, everything else (and `\`, `=`,
/// space) as `\xNN`. An abstract socket name (leading NUL) is written `@name`; a path that
/// really starts with `@` gets its `@` escaped.
pub fn escape_into(out: &mut String, bytes: &[u8], is_path: bool) {
    escape_with(out, bytes, is_path, b"\\= ");
}

/// [`escape_into`] with `special` as the set of printable bytes that are escaped too.
fn escape_with(out: &mut String, bytes: &[u8], is_path: bool, special: &[u8]) {
    let mut rest = bytes;
    if is_path {
        match bytes.split_first() {
            Some((&0, tail)) => {
                out.push('@');
                rest = tail;
            }
            // A path that really starts with `@` must not read back as abstract.
            Some((&b'@', tail)) => {
                out.push_str("\\x40");
                rest = tail;
            }
            _ => {}
        }
    }
    for &b in rest {
        if b.is_ascii_graphic() && !special.contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

/// Reverses [`escape_into`].
#[must_use]
pub fn unescape(s: &str, is_path: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.as_bytes();
    if is_path {
        if let Some((b'@', tail)) = bytes.split_first() {
            out.push(0);
            bytes = tail;
        }
    }
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            if let Some(v) = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Writes the packet comment of `v` into `out` (cleared first).
pub fn write_comment(out: &mut String, v: &PacketView<'_>) {
    out.clear();
    let _ = write!(out, "pid={} tid={} comm=", v.pid, v.tid);
    escape_into(out, v.comm, false);
    let _ = write!(
        out,
        " uid={} gid={} type={} ino={} peer_ino={} path=",
        v.uid,
        v.gid,
        v.sock_type.name(),
        v.ino,
        v.peer_ino
    );
    escape_into(out, v.path, true);
    out.push_str(" peer_path=");
    escape_into(out, v.peer_path, true);
    if !v.peers.is_empty() {
        out.push_str(" peer_pid=");
        for (i, h) in v.peers.iter().enumerate() {
            let _ = write!(out, "{}{}", if i == 0 { "" } else { "," }, h.pid);
        }
        out.push_str(" peer_comm=");
        for (i, h) in v.peers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // The list separator cannot stand inside a name.
            escape_with(out, h.comm.as_bytes(), false, b"\\=, ");
        }
    }
    match syscall_name(v.syscall) {
        Some(name) => {
            let _ = write!(out, " syscall={name}");
        }
        None => out.push_str(" syscall=other"),
    }
    let _ = write!(out, " msg_len={}", v.msg_len);
    if v.recv {
        out.push_str(" dir=recv");
    }
    if v.msg_len > u64::from(v.orig_len) {
        let _ = write!(out, " seg_offset={}", v.seg_offset);
    }
    if let Some(cut) = v.cut {
        let _ = write!(out, " payload={}", cut.name());
    }
    out.push_str(v.ancillary);
}

/// Metadata parsed back from a comment, owning its byte strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMeta {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: Vec<u8>,
    pub sock_type: SockType,
    pub ino: u64,
    pub peer_ino: u64,
    pub path: Vec<u8>,
    pub peer_path: Vec<u8>,
    /// Processes holding the peer socket (their fds are not recorded).
    pub peers: Vec<Holder>,
    pub recv: bool,
    pub syscall: i32,
    pub msg_len: u64,
    pub seg_offset: u64,
    pub cut: Option<Cut>,
    /// The control data keys, as written (see [`write_ancillary`]).
    pub ancillary: String,
}

/// Why a comment is not udstrace metadata.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("packet comment is not udstrace metadata: {0}")]
pub struct MetaError(String);

impl std::str::FromStr for ParsedMeta {
    type Err = MetaError;

    fn from_str(s: &str) -> Result<Self, MetaError> {
        let mut m = ParsedMeta {
            pid: 0,
            tid: 0,
            uid: 0,
            gid: 0,
            comm: Vec::new(),
            sock_type: SockType::Stream,
            ino: 0,
            peer_ino: 0,
            path: Vec::new(),
            peer_path: Vec::new(),
            peers: Vec::new(),
            recv: false,
            syscall: -1,
            msg_len: 0,
            seg_offset: 0,
            cut: None,
            ancillary: String::new(),
        };
        let mut seen_type = false;
        for pair in s.split(' ').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| MetaError(format!("`{pair}` is not key=value")))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| MetaError(format!("{k}={v} is not a number")))
            };
            match k {
                "pid" => m.pid = num(v)? as u32,
                "tid" => m.tid = num(v)? as u32,
                "uid" => m.uid = num(v)? as u32,
                "gid" => m.gid = num(v)? as u32,
                "comm" => m.comm = unescape(v, false),
                "type" => {
                    m.sock_type = [SockType::Stream, SockType::Dgram, SockType::SeqPacket]
                        .into_iter()
                        .find(|t| t.name() == v)
                        .ok_or_else(|| MetaError(format!("unknown type {v}")))?;
                    seen_type = true;
                }
                "ino" => m.ino = num(v)?,
                "peer_ino" => m.peer_ino = num(v)?,
                "path" => m.path = unescape(v, true),
                "peer_path" => m.peer_path = unescape(v, true),
                "peer_pid" => {
                    for (index, pid) in v.split(',').enumerate() {
                        let pid = pid.parse().map_err(|_| {
                            MetaError(format!("peer_pid={v} is not a list of numbers"))
                        })?;
                        match m.peers.get_mut(index) {
                            Some(holder) => holder.pid = pid,
                            None => m.peers.push(Holder {
                                pid,
                                comm: String::new(),
                                fd: 0,
                            }),
                        }
                    }
                }
                "peer_comm" => {
                    for (index, comm) in v.split(',').enumerate() {
                        let comm = String::from_utf8_lossy(&unescape(comm, false)).into_owned();
                        match m.peers.get_mut(index) {
                            Some(holder) => holder.comm = comm,
                            None => m.peers.push(Holder {
                                pid: 0,
                                comm,
                                fd: 0,
                            }),
                        }
                    }
                }
                "syscall" => m.syscall = syscall_number(v).unwrap_or(-1),
                "msg_len" => m.msg_len = num(v)?,
                "seg_offset" => m.seg_offset = num(v)?,
                "payload" => m.cut = Cut::parse(v),
                "dir" => m.recv = v == "recv",
                k if ANCILLARY_KEYS.contains(&k) => {
                    m.ancillary.push(' ');
                    m.ancillary.push_str(pair);
                }
                // Keys added by later versions are skipped.
                _ => {}
            }
        }
        if !seen_type {
            return Err(MetaError("no type=".into()));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(path: &'a [u8], payload: &'a [u8]) -> PacketView<'a> {
        PacketView {
            ts_ns: 0,
            pid: 42,
            tid: 43,
            uid: 0,
            gid: 5,
            comm: b"my prog",
            peers: &[],
            recv: false,
            sock_type: SockType::SeqPacket,
            ino: 9,
            peer_ino: 10,
            path,
            peer_path: b"\0abs=1",
            syscall: 46,
            msg_len: 100,
            seg_offset: 0,
            orig_len: 100,
            payload,
            cut: Some(Cut::Snaplen),
            ancillary: "",
        }
    }

    #[test]
    fn comment_text() {
        let mut s = String::new();
        write_comment(&mut s, &view(b"/run/a b.sock", b"x"));
        assert_eq!(
            s,
            "pid=42 tid=43 comm=my\\x20prog uid=0 gid=5 type=seqpacket ino=9 peer_ino=10 \
             path=/run/a\\x20b.sock peer_path=@abs\\x3d1 syscall=sendmsg msg_len=100 payload=snaplen"
        );
    }

    #[test]
    fn comment_round_trips() {
        for path in [&b"/run/x"[..], b"", b"@literal", b"\0", b"\xff\\\x01"] {
            let mut s = String::new();
            let v = view(path, b"");
            write_comment(&mut s, &v);
            let m: ParsedMeta = s.parse().unwrap();
            assert_eq!(m.path, path, "{s}");
            assert_eq!(m.peer_path, b"\0abs=1");
            assert_eq!(m.comm, b"my prog");
            assert_eq!(
                (m.pid, m.tid, m.uid, m.gid, m.ino, m.peer_ino),
                (42, 43, 0, 5, 9, 10)
            );
            assert_eq!(m.sock_type, SockType::SeqPacket);
            assert_eq!(m.syscall, 46);
            assert_eq!(m.cut, Some(Cut::Snaplen));
        }
    }

    #[test]
    fn peers_round_trip() {
        let peers = [
            Holder {
                pid: 7,
                comm: "a,b".into(),
                fd: 3,
            },
            Holder {
                pid: 8,
                comm: "sh".into(),
                fd: 4,
            },
        ];
        let mut v = view(b"", b"");
        v.peers = &peers;
        let mut s = String::new();
        write_comment(&mut s, &v);
        assert!(s.contains(" peer_pid=7,8 peer_comm=a\\x2cb,sh "), "{s}");
        let m: ParsedMeta = s.parse().unwrap();
        assert_eq!(
            m.peers
                .iter()
                .map(|h| (h.pid, h.comm.as_str()))
                .collect::<Vec<_>>(),
            [(7, "a,b"), (8, "sh")]
        );
    }

    #[test]
    fn foreign_comment_is_an_error() {
        assert!("hello world".parse::<ParsedMeta>().is_err());
        assert!("pid=1".parse::<ParsedMeta>().is_err());
        assert!("pid=x type=stream".parse::<ParsedMeta>().is_err());
    }
}
