//! Names for the synthesised addresses: each socket's address is named after the process that
//! uses it and the socket's name (`curl[4242]`, `dockerd[812]:/run/docker.sock`), written
//! into the pcapng as name resolution records just before the first packet that carries the
//! address, so that Wireshark with network name resolution on shows processes where it would
//! show hosts (docs/FORMAT.md, *Names of the addresses*).
//!
//! A socket's name comes from its own sender when the capture has seen it send (or, with
//! `--recv`, read): the kernel said which process that was. Before that, the receivers named
//! in a packet sent to it stand in, and are replaced once, by the sender's, when they differ.
//! A name taken from the socket's own use is never changed: a socket passed on to another
//! process (fork, `SCM_RIGHTS`) keeps the name of the first process seen using it, as
//! Wireshark keeps one name per address; each packet's comment says who sent it.

use std::fmt::Write as _;

use super::headers::{ADDRESS_PREFIX, IPV6_LEN};
use crate::{hash::FastMap, packet::Packet};

/// The longest name Wireshark 4.0 keeps (`MAXNAMELEN` 64, with its terminating NUL).
pub(crate) const MAX_NAME_LEN: usize = 63;

/// Addresses remembered per section before the table is emptied (each is then named again
/// the next time it appears, at the cost of a repeated record).
const MAX_NAMED: usize = 1 << 14;

/// How an address was named in this section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// After the receivers a packet sent to it named; the name's hash.
    StandIn(u64),
    /// After its own sender (or reader): final.
    Own,
}

/// The addresses named in the current section, and the records due before the next packet.
#[derive(Debug, Default)]
pub(crate) struct AddressNames {
    named: FastMap<[u8; 16], Named>,
    /// Records to write before the packet last given to [`AddressNames::learn`].
    due: Vec<([u8; 16], String)>,
}

impl AddressNames {
    /// Forgets every name: a new section (the next file of a rotated set) names its addresses
    /// again.
    pub(crate) fn new_section(&mut self) {
        self.named.clear();
        self.due.clear();
    }

    /// The name records to write before packet `p`: its addresses not yet named in this
    /// section (or named by stand-ins that its own sender now contradicts).
    pub(crate) fn learn(&mut self, p: &Packet<'_>) -> &[([u8; 16], String)] {
        self.due.clear();
        let (Some(src), Some(dst)) = (address(p.headers, 8), address(p.headers, 24)) else {
            return &self.due;
        };
        let meta = &p.meta;
        // A receive travels from the peer to the reading socket.
        let (own, peer) = if meta.is_recv() {
            (dst, src)
        } else {
            (src, dst)
        };
        self.offer(own, Some((meta.pid, &meta.comm)), 0, &meta.path, true);
        let others = meta.peers.len().saturating_sub(1);
        let first = meta.peers.first().map(|h| (h.pid, h.comm.as_bytes()));
        self.offer(peer, first, others, &meta.peer_path, false);
        &self.due
    }

    /// Names `address` after `holder` (pid and command; `others` more processes hold the
    /// socket) and the socket name `sock_name`, if it is due; `own`: the holder is the
    /// socket's own sender or reader.
    fn offer(
        &mut self,
        address: [u8; 16],
        holder: Option<(u32, &[u8])>,
        others: usize,
        sock_name: &[u8],
        own: bool,
    ) {
        let Some((pid, comm)) = holder else { return };
        if address[8..] == [0; 8] {
            // `fd75:6473::`: every unconnected datagram's destination, no one socket.
            return;
        }
        let known = self.named.get(&address).copied();
        if known == Some(Named::Own) || (known.is_some() && !own) {
            return;
        }
        let name = name(pid, comm, others, sock_name);
        let hash = hash(&name);
        if known == Some(Named::StandIn(hash)) {
            self.named.insert(address, Named::Own);
            return;
        }
        if known.is_none() && self.named.len() >= MAX_NAMED {
            self.named.clear();
        }
        self.named.insert(
            address,
            if own {
                Named::Own
            } else {
                Named::StandIn(hash)
            },
        );
        self.due.push((address, name));
    }
}

/// The synthesised address at `at` in `headers`, if they are udstrace's.
fn address(headers: &[u8], at: usize) -> Option<[u8; 16]> {
    let a: [u8; 16] = headers.get(at..at + 16)?.try_into().ok()?;
    (headers.len() >= IPV6_LEN && a[..8] == ADDRESS_PREFIX).then_some(a)
}

fn hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// The name of a socket used by process `pid`, command `comm` (and `others` more processes),
/// with the name
/// `sock_name`: `comm[pid]`, `comm[pid]+N` when N more processes hold it, then
/// `:path` (`:@name` for an abstract name) when it has one. Printable ASCII and space; any
/// other byte, and `\`, is written `\xNN` (a path that begins with `@` begins `\x40`). At most [`MAX_NAME_LEN`] bytes: a long socket name keeps its end, after
/// `...`, and a long command is cut.
#[must_use]
pub(crate) fn name(pid: u32, comm: &[u8], others: usize, sock_name: &[u8]) -> String {
    let mut out = String::with_capacity(MAX_NAME_LEN + 8);
    printable(&mut out, comm);
    // The command alone may take at most half the room.
    cut_at_char(&mut out, MAX_NAME_LEN / 2);
    let _ = write!(out, "[{pid}]");
    if others > 0 {
        let _ = write!(out, "+{others}");
    }
    if sock_name.is_empty() {
        return out;
    }
    let mut path = String::new();
    let sock_name = match sock_name.split_first() {
        Some((&0, abstract_name)) => {
            path.push('@');
            abstract_name
        }
        // A path that really starts with `@` must not read as abstract.
        Some((&b'@', rest)) => {
            path.push_str("\\x40");
            rest
        }
        _ => sock_name,
    };
    printable(&mut path, sock_name);
    out.push(':');
    let room = MAX_NAME_LEN.saturating_sub(out.len());
    if path.len() <= room {
        out.push_str(&path);
    } else {
        let keep = room.saturating_sub(3);
        let mut from = path.len() - keep;
        while !path.is_char_boundary(from) {
            from += 1;
        }
        out.push_str("...");
        out.push_str(&path[from..]);
    }
    out
}

/// Appends `bytes`: printable ASCII and space as they are, any other byte (and `\`) as `\xNN`.
fn printable(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if (b.is_ascii_graphic() || b == b' ') && b != b'\\' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

fn cut_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::{
        output::headers::{address as synthesised, write_headers, Flow, MAX_HEADER_LEN},
        packet::{Bytes, Dir, Holder, Meta, Peers},
    };
    use udstrace_common::SockType;

    fn holder(pid: u32, comm: &str) -> Holder {
        Holder {
            pid,
            comm: comm.into(),
            fd: 3,
            container: String::new(),
        }
    }

    #[test]
    fn names_are_short_printable_and_keep_the_end_of_paths() {
        assert_eq!(name(30233, b"docker", 0, b""), "docker[30233]");
        assert_eq!(
            name(29238, b"dockerd", 0, b"/var/run/docker.sock"),
            "dockerd[29238]:/var/run/docker.sock"
        );
        assert_eq!(name(7, b"a b", 2, b"\0x"), "a b[7]+2:@x");
        assert_eq!(name(7, b"t\x01", 0, b"@p"), "t\\x01[7]:\\x40p");
        let long = format!("/run/{}/end.sock", "d".repeat(100));
        let n = name(1, b"server", 0, long.as_bytes());
        assert_eq!(n.len(), MAX_NAME_LEN);
        assert!(n.starts_with("server[1]:..."), "{n}");
        assert!(n.ends_with("ddd/end.sock"), "{n}");
        let n = name(1, "c".repeat(40).as_bytes(), 0, b"");
        assert_eq!(n, format!("{}[1]", "c".repeat(31)));
    }

    /// A packet from socket `src` to `dst` sent by `pid`, read by `peers`.
    fn packet_names(
        names: &mut AddressNames,
        (src, dst): (u64, u64),
        pid: u32,
        peers: &[Holder],
        dir: Dir,
    ) -> Vec<(u64, String)> {
        let mut headers = [0u8; MAX_HEADER_LEN];
        let flow = Flow {
            sock_type: SockType::Stream,
            src_id: src,
            dst_id: dst,
            src_port: 1,
            dst_port: 2,
        };
        let len = write_headers(&mut headers, &flow, 0, 0, b"", None);
        let p = Packet {
            ts_ns: 0,
            meta: Meta {
                pid,
                comm: Bytes(Cow::Borrowed(b"cmd")),
                path: Bytes(Cow::Borrowed(if pid == 2 { b"/s" } else { b"" })),
                peer_path: Bytes(Cow::Borrowed(if pid == 2 { b"" } else { b"/s" })),
                peers: Peers(Cow::Owned(peers.to_vec())),
                dir,
                ..Meta::default()
            },
            orig_len: 0,
            payload: b"",
            headers: &headers[..len],
            drops: 0,
        };
        names
            .learn(&p)
            .iter()
            .map(|(a, n)| (u64::from_be_bytes(a[8..].try_into().unwrap()), n.clone()))
            .collect()
    }

    #[test]
    fn each_address_is_named_once_its_owner_first() {
        let mut names = AddressNames::default();
        let send = Dir::Send;
        // The client (pid 1, socket 10) to the server's socket 20, read by pid 2 (stand-in).
        assert_eq!(
            packet_names(&mut names, (10, 20), 1, &[holder(2, "cmd")], send),
            [(10, "cmd[1]".into()), (20, "cmd[2]:/s".into())]
        );
        assert_eq!(
            packet_names(&mut names, (10, 20), 1, &[holder(2, "cmd")], send),
            []
        );
        // The server answers as the stand-in said: nothing new.
        assert_eq!(
            packet_names(&mut names, (20, 10), 2, &[holder(1, "cmd")], send),
            []
        );
        // Another socket 30 whose stand-in was wrong: the owner's name replaces it, once.
        assert_eq!(
            packet_names(&mut names, (10, 30), 1, &[holder(5, "cmd")], send),
            [(30, "cmd[5]:/s".into())]
        );
        assert_eq!(
            packet_names(&mut names, (30, 10), 2, &[], send),
            [(30, "cmd[2]:/s".into())]
        );
        // A socket passed on keeps its first owner's name.
        assert_eq!(packet_names(&mut names, (30, 10), 9, &[], send), []);
        // A receive names the reader's socket (its destination) after the reader.
        assert_eq!(
            packet_names(&mut names, (40, 50), 1, &[holder(6, "cmd")], Dir::Recv),
            [(50, "cmd[1]".into()), (40, "cmd[6]:/s".into())]
        );
        // No name for the unconnected destination, nor for an unknown receiver.
        assert_eq!(
            packet_names(&mut names, (60, 0), 1, &[holder(6, "cmd")], send),
            [(60, "cmd[1]".into())]
        );
        assert_eq!(packet_names(&mut names, (60, 70), 1, &[], send), []);
        // A new section names its addresses again.
        names.new_section();
        assert_eq!(
            packet_names(&mut names, (60, 70), 1, &[], send),
            [(60, "cmd[1]".into())]
        );
        assert_eq!(synthesised(60)[8..], 60u64.to_be_bytes());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut names = AddressNames::default();
        for id in 1..=(MAX_NAMED as u64 + 10) {
            packet_names(&mut names, (id, 0), 1, &[], Dir::Send);
        }
        assert!(names.named.len() <= MAX_NAMED);
    }

    /// In the pcapng: the name resolution block comes just before the first packet that uses
    /// its addresses, and none before the next packet between the same sockets.
    #[test]
    fn names_precede_the_first_packet() {
        use crate::output::{
            section::capture_info,
            sink::{PcapngSink, Sink},
        };
        use pcap_parser::pcapng::Block;

        let mut headers = [0u8; MAX_HEADER_LEN];
        let flow = Flow {
            sock_type: SockType::Stream,
            src_id: 10,
            dst_id: 20,
            src_port: 1,
            dst_port: 2,
        };
        let len = write_headers(&mut headers, &flow, 0, 0, b"", None);
        let p = Packet {
            ts_ns: 1,
            meta: Meta {
                pid: 42,
                comm: Bytes(Cow::Borrowed(b"curl")),
                peer_path: Bytes(Cow::Borrowed(b"/run/docker.sock")),
                peers: Peers(Cow::Owned(vec![holder(7, "dockerd")])),
                ..Meta::default()
            },
            orig_len: 0,
            payload: b"",
            headers: &headers[..len],
            drops: 0,
        };
        let mut sink = PcapngSink::new(Vec::new(), &capture_info(65_536, "test"));
        sink.packet(&p).unwrap();
        sink.packet(&p).unwrap();
        let bytes = sink.into_output().unwrap();
        let mut rest = &bytes[..];
        let mut kinds = Vec::new();
        let mut names = Vec::new();
        while !rest.is_empty() {
            let (next, block) = pcap_parser::pcapng::parse_block_le(rest).unwrap();
            rest = next;
            kinds.push(match block {
                Block::SectionHeader(_) => "SHB",
                Block::InterfaceDescription(_) => "IDB",
                Block::NameResolution(nrb) => {
                    for r in nrb.nr.iter().filter(|r| r.record_type.0 == 2) {
                        let v = r.record_value;
                        let end = 16 + v[16..].iter().position(|&b| b == 0).unwrap();
                        names.push((
                            u64::from_be_bytes(v[8..16].try_into().unwrap()),
                            String::from_utf8(v[16..end].to_vec()).unwrap(),
                        ));
                    }
                    "NRB"
                }
                Block::EnhancedPacket(_) => "EPB",
                _ => "other",
            });
        }
        assert_eq!(kinds, ["SHB", "IDB", "NRB", "EPB", "EPB"]);
        assert_eq!(
            names,
            [
                (10, "curl[42]".to_string()),
                (20, "dockerd[7]:/run/docker.sock".to_string())
            ]
        );
    }
}
