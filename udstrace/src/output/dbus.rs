//! D-Bus in a byte stream, message by message (pure: no I/O). Wireshark decodes D-Bus only as
//! whole messages on a `LINKTYPE_DBUS` link, so each direction of a D-Bus connection is
//! reassembled here after its authentication lines and cut into messages, which `dbus_sink.rs`
//! writes on a second interface. See docs/FORMAT.md, *D-Bus*.
//!
//! A message: a 16-byte fixed header (endianness `l`/`B`, type, flags, version 1, body length,
//! serial, length of the header fields array), the header fields (an array of
//! `(BYTE code, VARIANT value)` structs), padding to 8, then the body.

use std::fmt::Write as _;

use super::ports::Protocol;
use crate::{
    packet::{escape_into, Packet},
    proc::names::name_matches,
};

/// `LINKTYPE_DBUS`: each packet is one whole D-Bus message, with no other header.
pub(crate) const LINKTYPE_DBUS: u16 = 231;

/// Bytes a direction buffers at most: a message longer than this is left in the stream's
/// packets (noted `skipped:N` on the next message).
pub(crate) const BUFFER_CAP: usize = 1 << 20;

/// The D-Bus specification's limits: a message of at most 128 MiB, a header fields array of
/// at most 64 MiB.
const MAX_MESSAGE: u64 = 1 << 27;
const MAX_FIELDS: u64 = 1 << 26;
/// While resynchronising, a candidate header's fields must fit in this much (real headers are
/// a few hundred bytes), so a false candidate cannot hold the scan for long.
const RESYNC_MAX_FIELDS: u64 = 1 << 16;
/// Authentication lines longer than this: not D-Bus authentication after all.
const MAX_AUTH_LINE: usize = 16 * 1024;

/// The well-known bus sockets (docs/FORMAT.md): system and session buses, systemd's private
/// bus, and the abstract names libdbus gives session buses.
const BUS_SOCKETS: &[&str] = &[
    "/run/dbus/system_bus_socket",
    "/var/run/dbus/system_bus_socket",
    "/run/user/*/bus",
    "/run/systemd/private",
    "/run/systemd/bus",
    "/run/systemd/inaccessible/dbus",
    "@/tmp/dbus-*",
    "/tmp/dbus-*",
    "@/run/user/*/dbus-*",
];

/// Which socket names speak D-Bus: `--decode PATH=dbus` rules, then the well-known sockets.
#[derive(Debug, Clone, Default)]
pub(crate) struct BusNames {
    user: Vec<String>,
}

impl BusNames {
    /// The `PATH=dbus` rules of `--decode` (others are the ports' business).
    #[must_use]
    pub(crate) fn new(decode: &[String]) -> Self {
        let user = decode
            .iter()
            .filter_map(|spec| spec.rsplit_once('='))
            .filter(|(_, proto)| Protocol::parse(proto) == Ok(Protocol::Dbus))
            .map(|(path, _)| path.to_string())
            .collect();
        Self { user }
    }

    /// Whether a socket with this bound name speaks D-Bus.
    #[must_use]
    pub(crate) fn matches(&self, name: &[u8]) -> bool {
        !name.is_empty()
            && (self.user.iter().any(|p| name_matches(p, name))
                || BUS_SOCKETS.iter().any(|p| name_matches(p, name)))
    }
}

/// Whether the first bytes a connection carries open the D-Bus authentication exchange: `Some`
/// once it can tell. A client sends a NUL byte, then `AUTH ...` (libdbus writes the NUL alone).
#[must_use]
pub(crate) fn opens_auth(first: &[u8]) -> Option<bool> {
    const OPENING: &[u8] = b"\0AUTH ";
    let n = first.len().min(OPENING.len());
    if first[..n] != OPENING[..n] {
        return Some(false);
    }
    (n == OPENING.len()).then_some(true)
}

/// The message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    MethodCall,
    MethodReturn,
    Error,
    Signal,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::MethodCall),
            2 => Some(Self::MethodReturn),
            3 => Some(Self::Error),
            4 => Some(Self::Signal),
            _ => None,
        }
    }

    /// As dbus-monitor names it.
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::MethodCall => "method call",
            Self::MethodReturn => "method return",
            Self::Error => "error",
            Self::Signal => "signal",
        }
    }
}

/// The fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fixed {
    pub(crate) big_endian: bool,
    pub(crate) kind: Kind,
    pub(crate) serial: u32,
    /// Length of the header fields array.
    pub(crate) fields_len: u64,
    /// Length of the whole message.
    pub(crate) total: u64,
}

/// The fixed header at the start of `b` (at least 16 bytes): `None` when it cannot be one.
#[must_use]
pub(crate) fn fixed(b: &[u8]) -> Option<Fixed> {
    let big_endian = match *b.first()? {
        b'l' => false,
        b'B' => true,
        _ => return None,
    };
    let kind = Kind::from_byte(*b.get(1)?)?;
    if b.get(2)? & !7 != 0 || *b.get(3)? != 1 {
        return None;
    }
    let u32_at = |i: usize| -> Option<u32> {
        let bytes: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    };
    let body = u64::from(u32_at(4)?);
    let serial = u32_at(8)?;
    let fields_len = u64::from(u32_at(12)?);
    if serial == 0 || fields_len > MAX_FIELDS {
        return None;
    }
    let total = (16 + fields_len).next_multiple_of(8) + body;
    (total <= MAX_MESSAGE).then_some(Fixed {
        big_endian,
        kind,
        serial,
        fields_len,
        total,
    })
}

/// The header fields of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) path: Option<String>,
    pub(crate) interface: Option<String>,
    pub(crate) member: Option<String>,
    pub(crate) error_name: Option<String>,
    pub(crate) reply_serial: Option<u32>,
    pub(crate) destination: Option<String>,
    pub(crate) sender: Option<String>,
    pub(crate) signature: Option<String>,
    pub(crate) unix_fds: Option<u32>,
}

/// The header fields of the message whose fixed header is `f`, from `msg` (holding at least
/// the fixed header and the fields array); `None` when they do not parse, or a field its type
/// requires is missing.
#[must_use]
pub(crate) fn fields(f: &Fixed, msg: &[u8]) -> Option<Fields> {
    parse_fields(f, msg).ok()
}

/// Why header fields were not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unread {
    /// `msg` ends before the fields array does, and what there is parses so far.
    Short,
    Bad,
}

/// [`fields`], telling a cut array that parses so far from a bad one.
fn parse_fields(f: &Fixed, msg: &[u8]) -> Result<Fields, Unread> {
    let end = 16 + usize::try_from(f.fields_len).map_err(|_| Unread::Bad)?;
    let get = |from: usize, to: usize| -> Result<&[u8], Unread> {
        if to > end {
            Err(Unread::Bad)
        } else {
            msg.get(from..to).ok_or(Unread::Short)
        }
    };
    let byte = |at: usize| get(at, at + 1).map(|b| b[0]);
    let u32_at = |at: usize| -> Result<u32, Unread> {
        let bytes: [u8; 4] = get(at, at + 4)?.try_into().expect("4 bytes");
        Ok(if f.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| Unread::Bad)
    };
    let mut at = 16;
    let mut out = Fields::default();
    while at < end {
        // Each field is a struct: aligned to 8 (offsets are from the message's start).
        at = at.next_multiple_of(8);
        if at >= end {
            break;
        }
        let code = byte(at)?;
        let sig_len = usize::from(byte(at + 1)?);
        let sig = get(at + 2, at + 2 + sig_len)?;
        if byte(at + 2 + sig_len)? != 0 {
            return Err(Unread::Bad);
        }
        at += 3 + sig_len;
        match sig {
            b"s" | b"o" => {
                at = at.next_multiple_of(4);
                let len = u32_at(at)? as usize;
                if at + 5 + len > end {
                    return Err(Unread::Bad);
                }
                let value = text(get(at + 4, at + 4 + len)?)?;
                if byte(at + 4 + len)? != 0 {
                    return Err(Unread::Bad);
                }
                at += 5 + len;
                match (code, sig) {
                    (1, b"o") => out.path = Some(value),
                    (2, b"s") => out.interface = Some(value),
                    (3, b"s") => out.member = Some(value),
                    (4, b"s") => out.error_name = Some(value),
                    (6, b"s") => out.destination = Some(value),
                    (7, b"s") => out.sender = Some(value),
                    (1..=9, _) => return Err(Unread::Bad),
                    _ => {}
                }
            }
            b"g" => {
                let len = usize::from(byte(at)?);
                let value = text(get(at + 1, at + 1 + len)?)?;
                if byte(at + 1 + len)? != 0 {
                    return Err(Unread::Bad);
                }
                at += 2 + len;
                match code {
                    8 => out.signature = Some(value),
                    1..=9 => return Err(Unread::Bad),
                    _ => {}
                }
            }
            b"u" => {
                at = at.next_multiple_of(4);
                let v = u32_at(at)?;
                at += 4;
                match code {
                    5 => out.reply_serial = Some(v),
                    9 => out.unix_fds = Some(v),
                    1..=9 => return Err(Unread::Bad),
                    _ => {}
                }
            }
            // Unknown fields (codes above 9) of other types are allowed but not walked: the
            // rest is not read.
            _ if code > 9 => {
                get(end - 1, end)?;
                at = end;
            }
            _ => return Err(Unread::Bad),
        }
    }
    if at > end || !out.complete(f.kind) {
        return Err(Unread::Bad);
    }
    Ok(out)
}

impl Fields {
    /// Whether the fields a message of `kind` requires are there.
    fn complete(&self, kind: Kind) -> bool {
        match kind {
            Kind::MethodCall => self.path.is_some() && self.member.is_some(),
            Kind::MethodReturn => self.reply_serial.is_some(),
            Kind::Error => self.error_name.is_some() && self.reply_serial.is_some(),
            Kind::Signal => {
                self.path.is_some() && self.interface.is_some() && self.member.is_some()
            }
        }
    }
}

/// What a message packet says of the bytes before it in its direction (the comment's `dbus=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Note {
    /// It follows the previous message (or the authentication) directly.
    Msg,
    /// After a loss or a capture that began mid-stream, N bytes before it formed no whole
    /// message; it was found by scanning for a plausible header.
    Resync(u64),
    /// The message before it, N bytes, was longer than [`BUFFER_CAP`]: it is only in the
    /// stream's packets.
    Skipped(u64),
}

impl Note {
    /// The comment value.
    pub(crate) fn write(self, out: &mut String) {
        match self {
            Self::Msg => out.push_str("msg"),
            Self::Resync(n) => {
                let _ = write!(out, "resync:{n}");
            }
            Self::Skipped(n) => {
                let _ = write!(out, "skipped:{n}");
            }
        }
    }
}

/// One whole message out of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) bytes: Vec<u8>,
    pub(crate) note: Note,
    /// Position of its first byte among the bytes fed to its direction.
    pub(crate) start: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing seen yet.
    Start,
    /// Authentication lines (the client's NUL byte already consumed).
    Auth,
    Messages,
    /// Skipping the rest of a message too long to buffer.
    Skipping {
        left: u64,
        len: u64,
    },
    /// Looking for a plausible header.
    Resync,
}

/// One direction of a D-Bus connection: bytes in, whole messages out. Memory: at most
/// [`BUFFER_CAP`] bytes plus one packet's.
#[derive(Debug, Clone)]
pub(crate) struct Direction {
    phase: Phase,
    buf: Vec<u8>,
    /// Position of `buf[0]` among the bytes fed.
    pos: u64,
    /// Bytes dropped since the last message while resynchronising.
    dropped: u64,
    /// The note of the next message.
    note: Note,
}

impl Default for Direction {
    fn default() -> Self {
        Self {
            phase: Phase::Start,
            buf: Vec::new(),
            pos: 0,
            dropped: 0,
            note: Note::Msg,
        }
    }
}

/// The authentication commands (client and server).
const AUTH_WORDS: &[&[u8]] = &[
    b"AUTH",
    b"CANCEL",
    b"BEGIN",
    b"DATA",
    b"ERROR",
    b"NEGOTIATE_UNIX_FD",
    b"OK",
    b"REJECTED",
    b"AGREE_UNIX_FD",
];

/// Whether `b` starts with an authentication line: `None` when it is too short to tell.
fn auth_line_at(b: &[u8]) -> Option<bool> {
    let word_end = b.iter().position(|c| !c.is_ascii_uppercase() && *c != b'_');
    let Some(end) = word_end else {
        // All letters so far: a prefix of a command?
        return if AUTH_WORDS.iter().any(|w| w.starts_with(b)) {
            None
        } else {
            Some(false)
        };
    };
    Some(AUTH_WORDS.contains(&&b[..end]) && matches!(b[end], b' ' | b'\r'))
}

impl Direction {
    /// Position of the next byte fed.
    #[must_use]
    pub(crate) fn position(&self) -> u64 {
        self.pos + self.buf.len() as u64
    }

    #[cfg(test)]
    /// Bytes this direction holds.
    #[must_use]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The bytes that follow the last fed ones were lost: what is buffered cannot complete,
    /// and the next message is looked for by scanning.
    pub(crate) fn lose(&mut self) {
        self.drop_front(self.buf.len());
        self.phase = Phase::Resync;
    }

    fn drop_front(&mut self, n: usize) {
        if !matches!(self.phase, Phase::Skipping { .. }) {
            self.dropped += n as u64;
        }
        self.buf.drain(..n);
        self.pos += n as u64;
    }

    /// Feeds the next bytes of the stream; appends the messages they complete to `out`.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<Message>) {
        self.buf.extend_from_slice(data);
        while self.step(out) {}
        // Idle connections do not keep a long message's room.
        if self.buf.capacity() > 64 * 1024 && self.buf.len() < 4096 {
            self.buf.shrink_to(4096);
        }
    }

    /// One step of the state machine; false when it needs more bytes.
    fn step(&mut self, out: &mut Vec<Message>) -> bool {
        match self.phase {
            Phase::Start => {
                let Some(&first) = self.buf.first() else {
                    return false;
                };
                if first == 0 {
                    // The client's NUL byte, if authentication follows (libdbus writes the NUL
                    // alone); else a capture that began mid-stream.
                    let Some(&next) = self.buf.get(1) else {
                        return false;
                    };
                    if next.is_ascii_uppercase() {
                        self.buf.remove(0);
                        self.pos += 1;
                        self.phase = Phase::Auth;
                    } else {
                        self.phase = Phase::Resync;
                    }
                } else if first.is_ascii_uppercase() && first != b'B' {
                    self.phase = Phase::Auth;
                } else {
                    // A capture that began after the authentication: messages, if the first
                    // bytes are a header, else a scan.
                    self.phase = Phase::Resync;
                }
                true
            }
            Phase::Auth => match auth_line_at(&self.buf) {
                None => false,
                Some(false) => {
                    self.phase = Phase::Messages;
                    true
                }
                Some(true) => {
                    let Some(nl) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                        if self.buf.len() > MAX_AUTH_LINE {
                            self.lose();
                        }
                        return false;
                    };
                    let begin = self.buf.starts_with(b"BEGIN");
                    self.buf.drain(..nl + 2);
                    self.pos += nl as u64 + 2;
                    if begin {
                        self.phase = Phase::Messages;
                    }
                    true
                }
            },
            Phase::Messages => {
                if self.buf.len() < 16 {
                    return false;
                }
                let Some(f) = fixed(&self.buf) else {
                    self.phase = Phase::Resync;
                    return true;
                };
                if f.total > BUFFER_CAP as u64 {
                    self.phase = Phase::Skipping {
                        left: f.total,
                        len: f.total,
                    };
                    return true;
                }
                let total = f.total as usize;
                if self.buf.len() < total {
                    return false;
                }
                if fields(&f, &self.buf).is_none() {
                    self.phase = Phase::Resync;
                    return true;
                }
                self.emit(total, out);
                true
            }
            Phase::Skipping { left, len } => {
                if self.buf.is_empty() {
                    return false;
                }
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                self.drop_front(n);
                let left = left - n as u64;
                if left == 0 {
                    self.phase = Phase::Messages;
                    self.note = Note::Skipped(len);
                } else {
                    self.phase = Phase::Skipping { left, len };
                }
                true
            }
            Phase::Resync => self.resync(),
        }
    }

    /// Scans for a plausible header; true when one is at the front of the buffer.
    fn resync(&mut self) -> bool {
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'l' || b == b'B' {
                let rest = &self.buf[i..];
                if rest.len() < 16 {
                    // Perhaps a header: wait for the rest.
                    self.drop_front(i);
                    return false;
                }
                if let Some(f) = fixed(rest).filter(|f| f.fields_len <= RESYNC_MAX_FIELDS) {
                    match parse_fields(&f, rest) {
                        Err(Unread::Short) => {
                            self.drop_front(i);
                            return false;
                        }
                        Err(Unread::Bad) => {}
                        Ok(_) => {
                            self.drop_front(i);
                            if self.dropped > 0 {
                                self.note = Note::Resync(self.dropped);
                            }
                            self.phase = Phase::Messages;
                            return true;
                        }
                    }
                }
            }
            i += 1;
        }
        let n = self.buf.len();
        self.drop_front(n);
        false
    }

    fn emit(&mut self, total: usize, out: &mut Vec<Message>) {
        let bytes: Vec<u8> = self.buf.drain(..total).collect();
        out.push(Message {
            bytes,
            note: std::mem::replace(&mut self.note, Note::Msg),
            start: self.pos,
        });
        self.pos += total as u64;
        self.dropped = 0;
    }
}

/// The text view's line for a D-Bus message packet (one with `dbus=`), without its time:
/// `dbus-send[77] -> dbus-daemon[12] method call org.freedesktop.DBus.ListNames path=/ ...`;
/// `None` for other packets.
#[must_use]
pub(crate) fn summary(packet: &Packet<'_>) -> Option<String> {
    let note = &packet.meta.dbus.0;
    if note.is_empty() {
        return None;
    }
    let meta = &packet.meta;
    let mut out = String::new();
    escape_into(&mut out, &meta.comm, false);
    let _ = write!(out, "[{}]", meta.pid);
    out.push_str(if meta.is_recv() { " <-" } else { " ->" });
    if meta.peers.is_empty() {
        out.push_str(" ?");
    }
    for (i, hf) in meta.peers.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        escape_into(&mut out, hf.comm.as_bytes(), false);
        let _ = write!(out, "[{}]", hf.pid);
    }
    let parsed =
        fixed(packet.payload).and_then(|head| Some((head, fields(&head, packet.payload)?)));
    let Some((head, hf)) = parsed else {
        let _ = write!(
            out,
            " D-Bus message not readable, length {}",
            packet.orig_len
        );
        return Some(out);
    };
    let _ = write!(out, " {}", head.kind.name());
    match (&hf.interface, &hf.member) {
        (Some(i), Some(m)) => {
            let _ = write!(out, " {i}.{m}");
        }
        (None, Some(m)) => {
            let _ = write!(out, " {m}");
        }
        _ => {}
    }
    if let Some(e) = &hf.error_name {
        let _ = write!(out, " {e}");
    }
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = write!(out, " {key}=");
            escape_into(&mut out, value.as_bytes(), false);
        }
    };
    put("path", hf.path);
    put("dest", hf.destination);
    put("sender", hf.sender);
    put("serial", Some(head.serial.to_string()));
    put("reply_serial", hf.reply_serial.map(|s| s.to_string()));
    put("sig", hf.signature);
    put("unix_fds", hf.unix_fds.map(|s| s.to_string()));
    if note != "msg" {
        let _ = write!(out, " dbus={note}");
    }
    Some(out)
}

#[cfg(test)]
mod tests;
