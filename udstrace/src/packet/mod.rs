//! The packet model: one packet as every output sees it (pcapng, the text view, `-r`), and
//! the table of its metadata fields (`fields.rs`), the one place a field is declared.

mod fields;
mod values;

pub(crate) use fields::{Comments, Lua, Meta, FIELDS};
pub(crate) use values::escape_with;
pub(crate) use values::{escape_into, Bytes, Cut, Dir, Holder, PeerBy, Peers, Raw, Syscall};

/// One packet: a message, or one segment of a long one, with what is known of it.
#[derive(Debug, Clone)]
pub(crate) struct Packet<'a> {
    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub(crate) ts_ns: u64,
    /// Who sent it, on which socket, to whom; the packet's comment.
    pub(crate) meta: Meta<'a>,
    /// Payload bytes the packet had on the wire.
    pub(crate) orig_len: u32,
    /// The bytes captured of them (a prefix).
    pub(crate) payload: &'a [u8],
    /// The synthesised IPv6 + TCP/UDP headers (docs/FORMAT.md).
    pub(crate) headers: &'a [u8],
    /// Packets lost since the previous one.
    pub(crate) drops: u64,
}
