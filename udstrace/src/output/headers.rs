//! The synthesised network headers that let Wireshark treat a Unix socket conversation as an
//! IPv6 one: TCP for stream sockets (byte stream, reassembly, Follow Stream), UDP for datagram
//! and seqpacket sockets (message boundaries kept). See docs/FORMAT.md.
//!
//! Addresses are `fd75:6473::/64` (a fixed ULA prefix, "uds" in ASCII) with the socket inode
//! number as the interface identifier; the TCP sequence number is the socket's byte offset
//! modulo 2^32, so bytes the capture lost show as a gap.

use udstrace_common::SockType;

use super::checksum;

/// First 64 bits of every synthesised address.
pub(crate) const ADDRESS_PREFIX: [u8; 8] = [0xfd, 0x75, 0x64, 0x73, 0, 0, 0, 0];
/// Bytes of the IPv6 header.
pub(crate) const IPV6_LEN: usize = 40;
/// Bytes of the synthesised TCP header (no options).
pub(crate) const TCP_LEN: usize = 20;
/// Bytes of the UDP header.
pub(crate) const UDP_LEN: usize = 8;
/// The largest synthesised header.
pub(crate) const MAX_HEADER_LEN: usize = IPV6_LEN + TCP_LEN;

const NEXT_HEADER_TCP: u8 = 6;
const NEXT_HEADER_UDP: u8 = 17;
const TCP_FLAGS_PSH_ACK: u8 = 0x18;
const TCP_WINDOW: u16 = 0xffff;

/// The TCP sequence number of the byte at `offset` in a socket's stream: as if the
/// connection's SYN had sequence number 0, the first byte has 1.
#[must_use]
pub(crate) fn tcp_seq(offset: u64) -> u32 {
    (offset as u32).wrapping_add(1)
}

/// The synthesised port of a socket: in the dynamic range (49152-65535), from its
/// identifier. Never 0: Wireshark's stream following treats port 0 as "no port".
#[must_use]
pub(crate) fn port(id: u64) -> u16 {
    0xC000 | (id as u16 & 0x3FFF)
}

/// The synthesised address of a socket identifier (0: unknown peer).
#[must_use]
pub(crate) fn address(id: u64) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&ADDRESS_PREFIX);
    a[8..].copy_from_slice(&id.to_be_bytes());
    a
}

#[cfg(test)]
/// The socket identifier encoded in a synthesised address, if it has the prefix.
#[must_use]
pub(crate) fn id_of(address: &[u8; 16]) -> Option<u64> {
    (address[..8] == ADDRESS_PREFIX)
        .then(|| u64::from_be_bytes(address[8..].try_into().expect("8 bytes")))
}

/// Addressing of one synthesised packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    pub(crate) sock_type: SockType,
    pub(crate) src_id: u64,
    pub(crate) dst_id: u64,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
}

/// Writes into `out` the IPv6 and TCP/UDP headers of a packet carrying `orig_len` payload
/// bytes, the first at `stream_offset` in the socket's byte stream, of which `payload` was
/// captured; returns their length. `ack` is the peer's next byte offset when known (TCP only).
pub(crate) fn write_headers(
    out: &mut [u8; MAX_HEADER_LEN],
    flow: &Flow,
    stream_offset: u64,
    orig_len: u32,
    payload: &[u8],
    ack: Option<u64>,
) -> usize {
    let src = address(flow.src_id);
    let dst = address(flow.dst_id);
    let (next_header, transport_len) = match flow.sock_type {
        SockType::Stream => (NEXT_HEADER_TCP, TCP_LEN),
        SockType::Dgram | SockType::SeqPacket => (NEXT_HEADER_UDP, UDP_LEN),
    };
    let upper_len = transport_len as u32 + orig_len;

    // IPv6: version 6, no traffic class or flow label.
    out[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    out[4..6].copy_from_slice(&(upper_len as u16).to_be_bytes());
    out[6] = next_header;
    out[7] = 64;
    out[8..24].copy_from_slice(&src);
    out[24..40].copy_from_slice(&dst);

    let t = &mut out[IPV6_LEN..IPV6_LEN + transport_len];
    t[0..2].copy_from_slice(&flow.src_port.to_be_bytes());
    t[2..4].copy_from_slice(&flow.dst_port.to_be_bytes());
    let checksum_at = if flow.sock_type == SockType::Stream {
        t[4..8].copy_from_slice(&tcp_seq(stream_offset).to_be_bytes());
        t[8..12].copy_from_slice(&ack.map_or(0, tcp_seq).to_be_bytes());
        t[12] = 5 << 4;
        t[13] = if ack.is_some() {
            TCP_FLAGS_PSH_ACK
        } else {
            TCP_FLAGS_PSH_ACK & !0x10
        };
        t[14..16].copy_from_slice(&TCP_WINDOW.to_be_bytes());
        t[16..20].fill(0);
        16
    } else {
        t[4..6].copy_from_slice(&(upper_len as u16).to_be_bytes());
        t[6..8].fill(0);
        6
    };
    // The checksum covers the captured bytes; it is the real one whenever the whole segment
    // was captured.
    let mut sum = checksum::add(0, &src);
    sum = checksum::add(sum, &dst);
    sum += u64::from(upper_len) + u64::from(next_header);
    sum = checksum::add(sum, t);
    sum = checksum::add(sum, payload);
    let mut checksum = checksum::finish(sum);
    if checksum == 0 && next_header == NEXT_HEADER_UDP {
        checksum = 0xffff;
    }
    t[checksum_at..checksum_at + 2].copy_from_slice(&checksum.to_be_bytes());
    IPV6_LEN + transport_len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trips() {
        let a = address(0x1234_5678_9abc);
        assert_eq!(&a[..4], &[0xfd, 0x75, 0x64, 0x73]);
        assert_eq!(id_of(&a), Some(0x1234_5678_9abc));
        assert_eq!(id_of(&[0; 16]), None);
        assert_eq!(port(0), 49152);
        assert_eq!(port(0x4001), 49153);
        assert_eq!(port(u64::MAX), 65535);
    }

    /// A TCP header checked against the checksum an independent sum gives.
    #[test]
    fn tcp_headers_and_checksum() {
        let flow = Flow {
            sock_type: SockType::Stream,
            src_id: 7,
            dst_id: 8,
            src_port: 1,
            dst_port: 2,
        };
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = write_headers(&mut out, &flow, 0x1_0000_0005, 3, b"abc", Some(9));
        assert_eq!(n, 60);
        assert_eq!(&out[4..6], &23u16.to_be_bytes());
        assert_eq!(out[6], 6);
        assert_eq!(
            &out[44..48],
            &6u32.to_be_bytes(),
            "sequence number wraps at 2^32"
        );
        assert_eq!(&out[48..52], &10u32.to_be_bytes());
        assert_eq!(out[53], 0x18);
        // Verifying: the sum over pseudo-header + segment including the checksum is 0xffff.
        let mut whole = Vec::new();
        whole.extend_from_slice(&out[8..40]);
        whole.extend_from_slice(&23u32.to_be_bytes());
        whole.extend_from_slice(&[0, 0, 0, 6]);
        whole.extend_from_slice(&out[40..60]);
        whole.extend_from_slice(b"abc");
        assert_eq!(checksum::finish(checksum::add(0, &whole)), 0);
    }

    #[test]
    fn udp_headers() {
        let flow = Flow {
            sock_type: SockType::Dgram,
            src_id: 7,
            dst_id: 0,
            src_port: 0,
            dst_port: 0,
        };
        let mut out = [0u8; MAX_HEADER_LEN];
        assert_eq!(write_headers(&mut out, &flow, 0, 4, b"ab", None), 48);
        assert_eq!(out[6], 17);
        assert_eq!(&out[44..46], &12u16.to_be_bytes());
        assert_ne!(&out[46..48], &[0, 0]);
    }
}
