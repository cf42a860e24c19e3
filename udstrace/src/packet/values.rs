//! The kinds of value a packet field holds, and how each is written in the comment and read
//! back: the comment's escaping, socket names, system call names, the peers' lists.

use std::{borrow::Cow, ops::Deref};

use udstrace_common::{record::flags, SockType};

/// How a field's value is written in the comment (`key=value`) and read back. A value with
/// several keys (the peers: `peer_pid` and `peer_comm`) is told which one.
pub(crate) trait Value {
    /// Whether the value is written at all (optional keys are left out when empty).
    fn present(&self) -> bool {
        true
    }
    /// Whether `key` is written, of a present value with several keys.
    fn has(&self, _key: &str) -> bool {
        true
    }
    /// Writes the value of `key`, escaped for the comment.
    fn write(&self, key: &str, out: &mut String);
    /// Sets the value from `key`'s text.
    fn read(&mut self, key: &str, text: &str) -> Result<(), String>;
}

/// Appends `n` in decimal. Every packet's comment holds about ten numbers: written
/// through `core::fmt` they were a tenth of udstrace's time per small packet.
pub(crate) fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// A value with any borrowed bytes copied, to keep past the record it came from.
pub(crate) trait ToStatic {
    type Static;
    fn to_static(&self) -> Self::Static;
}

/// Values that borrow nothing.
macro_rules! static_value {
    ($($t:ty),*) => {$(
        impl ToStatic for $t {
            type Static = $t;
            fn to_static(&self) -> $t {
                *self
            }
        }
    )*};
}

static_value!(u32, u64, i32, SockType, Dir, Syscall, Cut, PeerBy);

impl<T: ToStatic> ToStatic for Option<T> {
    type Static = Option<T::Static>;
    fn to_static(&self) -> Self::Static {
        self.as_ref().map(ToStatic::to_static)
    }
}

impl<const PATH: bool> ToStatic for Bytes<'_, PATH> {
    type Static = Bytes<'static, PATH>;
    fn to_static(&self) -> Self::Static {
        Bytes(Cow::Owned(self.0.to_vec()))
    }
}

impl ToStatic for Raw<'_> {
    type Static = Raw<'static>;
    fn to_static(&self) -> Self::Static {
        Raw(Cow::Owned(self.0.to_string()))
    }
}

impl ToStatic for Peers<'_> {
    type Static = Peers<'static>;
    fn to_static(&self) -> Self::Static {
        Peers(Cow::Owned(self.0.to_vec()))
    }
}

/// Numbers, written in decimal.
macro_rules! number_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn write(&self, _: &str, out: &mut String) {
                let n = i128::from(*self);
                if n < 0 {
                    out.push('-');
                }
                push_decimal(out, u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX));
            }
            fn read(&mut self, _: &str, text: &str) -> Result<(), String> {
                *self = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
                Ok(())
            }
        }
    )*};
}

number_value!(u32, u64, i32);

/// A number written only when known.
impl<T: Value + Default> Value for Option<T> {
    fn present(&self) -> bool {
        self.is_some()
    }
    fn write(&self, key: &str, out: &mut String) {
        if let Some(v) = self {
            v.write(key, out);
        }
    }
    fn read(&mut self, key: &str, text: &str) -> Result<(), String> {
        let mut v = T::default();
        v.read(key, text)?;
        *self = Some(v);
        Ok(())
    }
}

/// Hexadecimal digits of an escaped byte.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as a comment value: printable ASCII as is, everything else (and `\`, `=`,
/// space) as `\xNN`. An abstract socket name (leading NUL) is written `@name`; a path that
/// really starts with `@` gets its `@` escaped.
pub(crate) fn escape_into(out: &mut String, bytes: &[u8], is_path: bool) {
    escape_with(out, bytes, is_path, b"\\= ");
}

/// [`escape_into`] with `special` as the set of printable bytes that are escaped too.
pub(crate) fn escape_with(out: &mut String, bytes: &[u8], is_path: bool, special: &[u8]) {
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
    let plain = |b: &u8| b.is_ascii_graphic() && !special.contains(b);
    while !rest.is_empty() {
        // The longest run written as is, at once (ASCII, so UTF-8), then one escaped byte.
        let run = rest.iter().position(|b| !plain(b)).unwrap_or(rest.len());
        let (text, tail) = rest.split_at(run);
        out.push_str(std::str::from_utf8(text).unwrap_or_default());
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        out.push_str("\\x");
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
        rest = tail;
    }
}

/// Reverses [`escape_into`].
#[must_use]
pub(crate) fn unescape(s: &str, is_path: bool) -> Vec<u8> {
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

/// Bytes borrowed from a record, or owned after parsing: a socket's name when `PATH` (a path,
/// or an abstract name with a leading NUL, written `@name`; empty for an unnamed socket), else
/// any other bytes (a command name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bytes<'a, const PATH: bool>(pub(crate) Cow<'a, [u8]>);

/// A command name.
pub(crate) type Text<'a> = Bytes<'a, false>;
/// A socket's name.
pub(crate) type SockName<'a> = Bytes<'a, true>;

impl<const PATH: bool> Deref for Bytes<'_, PATH> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<const PATH: bool> Value for Bytes<'_, PATH> {
    fn write(&self, _: &str, out: &mut String) {
        escape_into(out, &self.0, PATH);
    }
    fn read(&mut self, _: &str, text: &str) -> Result<(), String> {
        self.0 = Cow::Owned(unescape(text, PATH));
        Ok(())
    }
}

/// Comment text kept as it was written (lists already in the comment's syntax: `fds=`,
/// `cmsg=`, `control=`); left out when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Raw<'a>(pub(crate) Cow<'a, str>);

impl Value for Raw<'_> {
    fn present(&self) -> bool {
        !self.0.is_empty()
    }
    fn write(&self, _: &str, out: &mut String) {
        out.push_str(&self.0);
    }
    fn read(&mut self, _: &str, text: &str) -> Result<(), String> {
        self.0 = Cow::Owned(text.to_string());
        Ok(())
    }
}

/// The socket's type.
impl Value for SockType {
    fn write(&self, _: &str, out: &mut String) {
        out.push_str(self.name());
    }
    fn read(&mut self, _: &str, text: &str) -> Result<(), String> {
        *self = [SockType::Stream, SockType::Dgram, SockType::SeqPacket]
            .into_iter()
            .find(|t| t.name() == text)
            .ok_or_else(|| format!("unknown type {text}"))?;
        Ok(())
    }
}

/// Whether a packet is a send or, with `--recv`, a receive; only receives say so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Dir {
    #[default]
    Send,
    Recv,
}

impl Value for Dir {
    fn present(&self) -> bool {
        *self == Self::Recv
    }
    fn write(&self, _: &str, out: &mut String) {
        out.push_str("recv");
    }
    fn read(&mut self, _: &str, text: &str) -> Result<(), String> {
        *self = if text == "recv" {
            Self::Recv
        } else {
            Self::Send
        };
        Ok(())
    }
}

/// The system call a message came from (`x86_64` numbers; -1: none known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syscall(pub(crate) i32);

impl Default for Syscall {
    fn default() -> Self {
        Self(-1)
    }
}

impl Syscall {
    /// Name of a system call that sends or receives on a socket, by udstrace's numbering
    /// (x86_64's; the tracer translates other architectures' numbers), or `compat` for a
    /// 32-bit task's call (not decoded).
    #[must_use]
    pub(crate) fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            udstrace_common::record::SYSCALL_COMPAT => "compat",
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
}

impl Value for Syscall {
    fn write(&self, _: &str, out: &mut String) {
        out.push_str(self.name().unwrap_or("other"));
    }
    fn read(&mut self, _: &str, text: &str) -> Result<(), String> {
        *self = Syscall(
            (udstrace_common::record::SYSCALL_COMPAT..512)
                .find(|&nr| Syscall(nr).name() == Some(text))
                .unwrap_or(-1),
        );
        Ok(())
    }
}

/// Why a packet carries fewer payload bytes than were sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The kernel could not see the bytes (sendfile, splice, io_uring).
    Missing,
    /// Cut at the snap length.
    #[default]
    Snaplen,
    /// Reading the sender's memory failed.
    Fault,
    /// More iovecs than the kernel program walks.
    IovLimit,
}

impl Cut {
    /// The word the comment uses (`payload=`).
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Snaplen => "snaplen",
            Self::Fault => "fault",
            Self::IovLimit => "iov-limit",
        }
    }

    /// Why a record's payload is short, from its flags (the snap length when none says).
    #[must_use]
    pub(crate) fn from_flags(f: u32) -> Self {
        if f & flags::PAYLOAD_MISSING != 0 {
            Self::Missing
        } else if f & flags::READ_FAULT != 0 {
            Self::Fault
        } else if f & flags::IOV_LIMIT != 0 {
            Self::IovLimit
        } else {
            Self::Snaplen
        }
    }
}

impl Value for Cut {
    fn write(&self, _: &str, out: &mut String) {
        out.push_str(self.name());
    }
    fn read(&mut self, _: &str, text: &str) -> Result<(), String> {
        *self = [Self::Missing, Self::Snaplen, Self::Fault, Self::IovLimit]
            .into_iter()
            .find(|c| c.name() == text)
            .ok_or_else(|| format!("unknown payload state {text}"))?;
        Ok(())
    }
}

/// How the receiving processes (`peer_pid`, ...) were known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum PeerBy {
    /// The kernel, at send time: the process last seen sending on the peer socket.
    #[default]
    Sent,
    /// The kernel, at send time: the process last seen reading from the peer socket.
    Read,
    /// The kernel, at send time: the sending socket's peer credentials (`SO_PEERCRED`), the
    /// process that called `listen()` (for a connection to a listener), `connect()` (for an
    /// accepted socket) or `socketpair()`. It can be stale: a process that forked after it
    /// (a preforking server) or passed the socket on reads in its place.
    Cred,
    /// The processes holding the peer socket in /proc when the packet was written.
    Proc,
}

impl PeerBy {
    /// The word the comment uses (`peer_by=`).
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Read => "read",
            Self::Cred => "cred",
            Self::Proc => "proc",
        }
    }
}

impl Value for PeerBy {
    fn write(&self, _: &str, out: &mut String) {
        out.push_str(self.name());
    }
    fn read(&mut self, _: &str, text: &str) -> Result<(), String> {
        *self = [Self::Sent, Self::Read, Self::Cred, Self::Proc]
            .into_iter()
            .find(|c| c.name() == text)
            .ok_or_else(|| format!("unknown receiver source {text}"))?;
        Ok(())
    }
}

/// A process holding a socket: who can read what is sent to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    pub(crate) comm: String,
    /// Its descriptor of the socket (not recorded in captures: 0 there).
    pub(crate) fd: u32,
    /// Its container's name (or short id); empty when it runs in none.
    pub(crate) container: String,
}

/// The processes holding the peer socket, written as lists of the same length:
/// `peer_pid=1,2`, `peer_comm=a,b` and, when one of them runs in a container,
/// `peer_container=web-1,` (empty for a process in none); left out when none is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Peers<'a>(pub(crate) Cow<'a, [Holder]>);

impl Deref for Peers<'_> {
    type Target = [Holder];
    fn deref(&self) -> &[Holder] {
        &self.0
    }
}

impl Value for Peers<'_> {
    fn present(&self) -> bool {
        !self.0.is_empty()
    }
    fn has(&self, key: &str) -> bool {
        key != "peer_container" || self.0.iter().any(|h| !h.container.is_empty())
    }
    fn write(&self, key: &str, out: &mut String) {
        for (i, h) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match key {
                "peer_pid" => push_decimal(out, u64::from(h.pid)),
                // The list separator cannot stand inside a name.
                "peer_comm" => escape_with(out, h.comm.as_bytes(), false, b"\\=, "),
                _ => escape_with(out, h.container.as_bytes(), false, b"\\=, "),
            }
        }
    }
    fn read(&mut self, key: &str, text: &str) -> Result<(), String> {
        let list = self.0.to_mut();
        for (index, item) in text.split(',').enumerate() {
            if list.len() <= index {
                list.push(Holder::default());
            }
            let unescaped = || String::from_utf8_lossy(&unescape(item, false)).into_owned();
            match key {
                "peer_pid" => {
                    list[index].pid = item
                        .parse()
                        .map_err(|_| format!("`{text}` is not a list of numbers"))?;
                }
                "peer_comm" => list[index].comm = unescaped(),
                _ => list[index].container = unescaped(),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_decimal() {
        let written = |write: &dyn Fn(&mut String)| {
            let mut s = String::new();
            write(&mut s);
            s
        };
        for n in [0, 9, 10, 4_294_967_295, u64::MAX] {
            assert_eq!(written(&|s| n.write("", s)), n.to_string());
        }
        for n in [0, -1, i32::MIN, i32::MAX] {
            assert_eq!(written(&|s| n.write("", s)), n.to_string());
        }
        assert_eq!(written(&|s| u32::MAX.write("", s)), "4294967295");
    }

    #[test]
    fn escaping_runs_and_bytes() {
        let mut s = String::new();
        escape_into(&mut s, b"ab c=d\\\x00\xffend", false);
        assert_eq!(s, "ab\\x20c\\x3dd\\x5c\\x00\\xffend");
        assert_eq!(unescape(&s, false), b"ab c=d\\\x00\xffend");
        s.clear();
        escape_with(&mut s, b"x,y", false, b",");
        assert_eq!(s, "x\\x2cy");
    }
}
