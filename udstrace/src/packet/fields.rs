//! One home for each packet field: the table below declares every piece of metadata a packet
//! carries, in the order its comment writes them. The struct [`Meta`], the comment writer
//! and parser, the list [`FIELDS`] (which the Lua plugin and docs/FORMAT.md are checked
//! against) and the `key=value` suffix of the text view all follow from it.
//!
//! Adding a field: a line in the table (in its `sender` part when it is the same for a
//! socket's messages while nothing about the socket changes, else in `message`); the kernel
//! program and `SendRecord` when the kernel supplies it (and one line of the record decoder),
//! or the resolver that fills it in; a line of `lua/udstrace.lua` and of docs/FORMAT.md,
//! which a test holds to the table.

use super::values::{Cut, Dir, PeerBy, Peers, Raw, SockName, Syscall, Text, ToStatic, Value};
use udstrace_common::SockType;

/// The Wireshark field type the Lua plugin gives a key (`ProtoField.<type>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lua {
    Uint32,
    Uint64,
    Int32,
    String,
}

impl Lua {
    /// Whether the plugin reads the value as a number.
    #[must_use]
    pub(crate) fn is_number(self) -> bool {
        self != Self::String
    }

    /// The `ProtoField` constructor.
    #[must_use]
    pub(crate) fn constructor(self) -> &'static str {
        match self {
            Self::Uint32 => "uint32",
            Self::Uint64 => "uint64",
            Self::Int32 => "int32",
            Self::String => "string",
        }
    }
}

/// One key of the comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// The comment key, and the Wireshark field `udstrace.<key>`.
    pub(crate) key: &'static str,
    pub(crate) lua: Lua,
    /// The Wireshark field's title.
    pub(crate) title: &'static str,
    /// Shown in the text view as ` key=value` after the line's own layout.
    pub(crate) in_text: bool,
}

/// Declares [`Meta`] and everything that follows from the table. Each entry: the field, its
/// type (a [`Value`]), `line` when the text view lays it out itself or `suffix` when it
/// shows it as ` key=value` at the end of the line, then its comment keys with their
/// Wireshark types and titles. The table has two parts: `sender` says who sent the message on
/// which socket to whom, and is the same for every message of a socket as long as nothing
/// about it changes; `message` is each message's own. [`Comments`] writes the first part once
/// per run of packets with the same.
macro_rules! packet_fields {
    (<$lt:lifetime>
    sender { $(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty, $shown:ident { $($key:literal: $lua:ident $title:literal),+ };
    )* }
    message { $(
        $(#[doc = $mdoc:literal])*
        $mname:ident: $mty:ty, $mshown:ident { $($mkey:literal: $mlua:ident $mtitle:literal),+ };
    )* }) => {
        /// What a packet says about who sent it, on which socket, to whom: the comment's keys.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub(crate) struct Meta<$lt> {
            $( $(#[doc = $doc])* pub(crate) $name: $ty, )*
            $( $(#[doc = $mdoc])* pub(crate) $mname: $mty, )*
        }

        /// Every key of the comment, in the order it writes them.
        pub(crate) const FIELDS: &[Field] = &[
            $( $( Field {
                key: $key,
                lua: Lua::$lua,
                title: $title,
                in_text: packet_fields!(@shown $shown),
            }, )+ )*
            $( $( Field {
                key: $mkey,
                lua: Lua::$mlua,
                title: $mtitle,
                in_text: packet_fields!(@shown $mshown),
            }, )+ )*
        ];

        impl Meta<'_> {
            /// Writes the packet comment into `out` (cleared first): `key=value` pairs
            /// separated by spaces (docs/FORMAT.md).
            pub(crate) fn write_comment(&self, out: &mut String) {
                out.clear();
                self.write_sender(out);
                self.write_message(out);
            }

            /// Appends the keys of the table's `sender` part.
            fn write_sender(&self, out: &mut String) {
                $( packet_fields!(@write self, out, $name, $($key),+); )*
            }

            /// Appends the keys of the table's `message` part, after a space when `out`
            /// holds the sender's.
            fn write_message(&self, out: &mut String) {
                $( packet_fields!(@write self, out, $mname, $($mkey),+); )*
            }

            /// Whether the `sender` part of the table is the same in `other`.
            fn same_sender(&self, other: &Meta<'_>) -> bool {
                true $( && self.$name == other.$name )*
            }

            /// The `sender` part of the table, owned; the rest default.
            fn sender_owned(&self) -> Meta<'static> {
                Meta {
                    $( $name: ToStatic::to_static(&self.$name), )*
                    ..Meta::default()
                }
            }

            /// Appends ` key=value` for each field the text view shows that way.
            pub(crate) fn write_text_fields(&self, out: &mut String) {
                $( packet_fields!(@text self, out, $shown, $name, $($key),+); )*
                $( packet_fields!(@text self, out, $mshown, $mname, $($mkey),+); )*
            }

            /// Sets the field of comment key `key` from `text`; false for a key this version
            /// does not know.
            fn set(&mut self, key: &str, text: &str) -> Result<bool, String> {
                match key {
                    $( $( $key )|+ => Value::read(&mut self.$name, key, text)?, )*
                    $( $( $mkey )|+ => Value::read(&mut self.$mname, key, text)?, )*
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }
    };
    (@write $self:ident, $out:ident, $name:ident, $($key:literal),+) => {
        if Value::present(&$self.$name) {
            $( if Value::has(&$self.$name, $key) {
                if !$out.is_empty() {
                    $out.push(' ');
                }
                $out.push_str(concat!($key, "="));
                Value::write(&$self.$name, $key, $out);
            } )+
        }
    };
    (@text $self:ident, $out:ident, $shown:ident, $name:ident, $($key:literal),+) => {
        if packet_fields!(@shown $shown) && Value::present(&$self.$name) {
            $( if Value::has(&$self.$name, $key) {
                $out.push_str(concat!(" ", $key, "="));
                Value::write(&$self.$name, $key, $out);
            } )+
        }
    };
    (@shown suffix) => { true };
    (@shown line) => { false };
}

packet_fields! { <'a>
    sender {
    /// Sender's process id (the reader's, for a receive).
    pid: u32, line { "pid": Uint32 "Sender process ID" };
    /// Sender's thread id.
    tid: u32, line { "tid": Uint32 "Sender thread ID" };
    /// Sender's command name.
    comm: Text<'a>, line { "comm": String "Sender command" };
    /// Sender's user and group.
    uid: u32, line { "uid": Uint32 "Sender user ID" };
    gid: u32, line { "gid": Uint32 "Sender group ID" };
    /// Sender's cgroup (v2) id, which names its container.
    cgroup: Option<u64>, line { "cgroup": Uint64 "Sender cgroup ID" };
    /// Sender's container, when it runs in one: its name (or short id), full id, and
    /// Kubernetes pod (`namespace/name`).
    container: Option<Text<'a>>, line { "container": String "Sender container" };
    container_id: Option<Text<'a>>, line { "container_id": String "Sender container ID" };
    runtime: Option<Text<'a>>, line { "runtime": String "Sender container runtime" };
    pod: Option<Text<'a>>, line { "pod": String "Sender pod (namespace/name)" };
    sock_type: SockType, line { "type": String "Socket type" };
    /// Inode of the sending (for a receive, the reading) socket.
    ino: u64, line { "ino": Uint64 "Socket inode" };
    /// Inode of its peer; 0 when not known (a connection not yet accepted, no peer).
    peer_ino: u64, line { "peer_ino": Uint64 "Peer socket inode" };
    /// Bound names of the two sockets.
    path: SockName<'a>, line { "path": String "Socket name" };
    peer_path: SockName<'a>, line { "peer_path": String "Peer socket name" };
    /// The processes holding the peer socket: who can read the message.
    peers: Peers<'a>, line {
        "peer_pid": String "Peer process IDs",
        "peer_comm": String "Peer commands",
        "peer_container": String "Peer containers"
    };
    /// How the peer processes were known: by the kernel when the message was sent (`sent`,
    /// `read`: the last process seen using the peer socket; `cred`: the socket's peer
    /// credentials), or from /proc when the packet was written (`proc`).
    peer_by: Option<PeerBy>, line { "peer_by": String "How the peer processes were known" };
    syscall: Syscall, line { "syscall": String "System call" };
    }
    message {
    /// Bytes of the whole message (the send's return value).
    msg_len: u64, line { "msg_len": Uint64 "Message length" };
    /// A receive (`--recv`): the process read the bytes from socket `ino`.
    dir: Dir, line { "dir": String "Direction (recv: a receive)" };
    /// Offset of the packet in its message, when the message spans several packets.
    seg_offset: Option<u64>, line { "seg_offset": Uint64 "Offset in message" };
    /// Why the packet carries fewer bytes than it had, if it does.
    payload: Option<Cut>, line { "payload": String "Payload not captured" };
    /// `SCM_CREDENTIALS` passed with the message.
    cred_pid: Option<i32>, suffix {
        "cred_pid": Int32 "Credentials: process ID (SCM_CREDENTIALS)"
    };
    cred_uid: Option<u32>, suffix { "cred_uid": Uint32 "Credentials: user ID" };
    cred_gid: Option<u32>, suffix { "cred_gid": Uint32 "Credentials: group ID" };
    /// `SCM_RIGHTS`: `FD:WHAT,...`, each descriptor and what it is.
    fds: Raw<'a>, suffix { "fds": String "Passed file descriptors (SCM_RIGHTS)" };
    /// Other control messages: `LEVEL:TYPE:LEN,...`.
    cmsg: Raw<'a>, suffix { "cmsg": String "Other control messages" };
    /// `cut:N`: the control data was longer than the `N` bytes kept.
    control: Raw<'a>, suffix { "control": String "Control data cut" };
    /// A D-Bus message reassembled from its stream (written on the D-Bus interface; its
    /// bytes are also in the stream's packets): `msg`, `resync:N`, `skipped:N`.
    dbus: Raw<'a>, line { "dbus": String "D-Bus message from the stream (msg, resync:N, skipped:N)" };
    }
}

/// Writes packet comments, each the same as [`Meta::write_comment`]'s, but with the `sender`
/// part of the last few senders kept: a packet whose sender part is one of them (a socket's
/// messages, or the two ends of a conversation taking turns) copies it instead of writing
/// it, and comparing costs a tenth of writing.
#[derive(Default)]
pub(crate) struct Comments {
    /// The sender parts kept, each with its text.
    senders: [Option<(Meta<'static>, String)>; Comments::KEPT],
    /// The slot the next new sender part takes.
    next: usize,
    text: String,
}

impl Comments {
    /// Sender parts kept: the ends of a few conversations that interleave.
    const KEPT: usize = 4;

    /// The comment of `meta`.
    pub(crate) fn write(&mut self, meta: &Meta<'_>) -> &str {
        self.text.clear();
        let kept = self
            .senders
            .iter()
            .flatten()
            .find(|(sender, _)| sender.same_sender(meta));
        if let Some((_, text)) = kept {
            self.text.push_str(text);
        } else {
            meta.write_sender(&mut self.text);
            self.senders[self.next] = Some((meta.sender_owned(), self.text.clone()));
            self.next = (self.next + 1) % Self::KEPT;
        }
        meta.write_message(&mut self.text);
        &self.text
    }
}

/// Why a comment is not udstrace metadata.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("packet comment is not udstrace metadata: {0}")]
pub(crate) struct MetaError(String);

impl Meta<'_> {
    /// Whether the packet is a receive.
    #[must_use]
    pub(crate) fn is_recv(&self) -> bool {
        self.dir == Dir::Recv
    }
}

impl std::str::FromStr for Meta<'static> {
    type Err = MetaError;

    /// Parses a comment; keys of later versions are skipped, and `type=` must be there.
    fn from_str(s: &str) -> Result<Self, MetaError> {
        let mut m = Meta::default();
        let mut seen_type = false;
        for pair in s.split(' ').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| MetaError(format!("`{pair}` is not key=value")))?;
            m.set(k, v).map_err(|e| MetaError(format!("{k}: {e}")))?;
            seen_type |= k == "type";
        }
        if !seen_type {
            return Err(MetaError("no type=".into()));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests;
