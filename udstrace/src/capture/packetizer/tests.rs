//! The packetizer on records built as the kernel programs build them.

use std::collections::HashMap;

use super::*;
use crate::{
    output::pcapng::{Stats, DIRECTION_INBOUND, DIRECTION_OUTBOUND},
    proc::peers::Fixed,
    tracer::record::testing::RawRecord,
};

/// (headers, payload, drops) of each packet, each packet's peer inode, and its
/// (direction, receive flag).
struct Collect(Vec<(Vec<u8>, Vec<u8>, u64)>, Vec<u64>, Vec<(u32, bool)>);

impl Collect {
    fn new() -> Self {
        Self(Vec::new(), Vec::new(), Vec::new())
    }
}

impl Sink for Collect {
    fn packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        self.0
            .push((p.headers.to_vec(), p.payload.to_vec(), p.drops));
        self.1.push(p.meta.peer_ino);
        let recv = p.meta.is_recv();
        let direction = if recv {
            DIRECTION_INBOUND
        } else {
            DIRECTION_OUTBOUND
        };
        self.2.push((direction, recv));
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn finish(&mut self, _: &Stats) -> io::Result<()> {
        Ok(())
    }
}

/// A packetizer with no processes to name and the `limit`.
fn packetizer(limit: Option<u64>) -> Packetizer {
    Packetizer::new(WallClock::new(), limit)
        .with_peers(PeerResolver::with_source(Box::new(Fixed(HashMap::new()))))
        .with_containers(ContainerNames::off())
}

/// Feeds encoded records to `p`.
fn feed(p: &mut Packetizer, sink: &mut Collect, records: &[Vec<u8>]) {
    for r in records {
        p.record(&SendSegment::try_from(r.as_slice()).unwrap(), sink)
            .unwrap();
    }
}

#[test]
fn acks_follow_the_peer_and_drops_are_deltas() {
    let mut p = packetizer(None);
    let mut sink = Collect::new();
    let a = RawRecord {
        sock_ino: 1,
        peer_ino: 2,
        stream_offset: 100,
        msg_len: 5,
        ..RawRecord::default()
    }
    .encode();
    let b = RawRecord {
        sock_ino: 2,
        peer_ino: 1,
        stream_offset: 7,
        msg_len: 5,
        lost_segments: 2,
        ..RawRecord::default()
    }
    .encode();
    let c = RawRecord {
        sock_ino: 1,
        peer_ino: 2,
        stream_offset: 105,
        msg_len: 5,
        lost_segments: 2,
        ..RawRecord::default()
    }
    .encode();
    feed(&mut p, &mut sink, &[a, b, c]);
    let ack = |h: &[u8]| u32::from_be_bytes(h[48..52].try_into().unwrap());
    let seq = |h: &[u8]| u32::from_be_bytes(h[44..48].try_into().unwrap());
    assert_eq!(sink.0[0].0[53] & 0x10, 0, "no ACK before the peer was seen");
    assert_eq!((seq(&sink.0[1].0), ack(&sink.0[1].0)), (8, 106));
    assert_eq!((seq(&sink.0[2].0), ack(&sink.0[2].0)), (106, 13));
    assert_eq!([sink.0[0].2, sink.0[1].2, sink.0[2].2], [0, 2, 0]);
}

/// A receive is the peer-to-reader packet of the same conversation, inbound, with the
/// reader's byte count as its sequence number; it does not move the sender's ACK state.
#[test]
fn receives_are_inbound_from_the_peer() {
    let mut p = packetizer(None);
    let mut sink = Collect::new();
    let sent = RawRecord {
        sock_ino: 1,
        peer_ino: 2,
        stream_offset: 0,
        msg_len: 5,
        ..RawRecord::default()
    }
    .encode();
    let read = RawRecord {
        flags: udstrace_common::record::flags::LAST | udstrace_common::record::flags::RECV,
        sock_ino: 2,
        peer_ino: 1,
        stream_offset: 0,
        msg_len: 5,
        ..RawRecord::default()
    }
    .encode();
    let reply = RawRecord {
        sock_ino: 2,
        peer_ino: 1,
        stream_offset: 0,
        msg_len: 5,
        ..RawRecord::default()
    }
    .encode();
    feed(&mut p, &mut sink, &[sent, read, reply]);
    let addrs = |h: &[u8]| (h[8..24].to_vec(), h[24..40].to_vec());
    let ports = |h: &[u8]| (h[40..42].to_vec(), h[42..44].to_vec());
    let seq = |h: &[u8]| u32::from_be_bytes(h[44..48].try_into().unwrap());
    let ack = |h: &[u8]| u32::from_be_bytes(h[48..52].try_into().unwrap());
    let (s, r, y) = (&sink.0[0], &sink.0[1], &sink.0[2]);
    assert_eq!(sink.2[0], (DIRECTION_OUTBOUND, false));
    assert_eq!(sink.2[1], (DIRECTION_INBOUND, true));
    assert_eq!(
        addrs(&r.0),
        addrs(&s.0),
        "same direction as the send it reads"
    );
    assert_eq!(ports(&r.0), ports(&s.0));
    assert_eq!(seq(&r.0), seq(&s.0));
    // The reply acknowledges the send, not the receive.
    assert_eq!(ack(&y.0), 6);
}

/// A client sends to a connection not yet accepted: the kernel has no inode for the peer,
/// yet the packets of both directions share one conversation, and the peer's inode is
/// filled in once it is known.
#[test]
fn peer_without_inode_yet() {
    let mut p = packetizer(None);
    let mut sink = Collect::new();
    let embryo = Some(0xffff_8888_0000_1000);
    // Before accept() the kernel has no inode for the server's socket; after, it does.
    let client = |off, peer_ino| RawRecord {
        sock_ino: 10,
        peer_ino,
        peer_id: embryo,
        stream_offset: off,
        ..RawRecord::default()
    };
    let server = RawRecord {
        sock_ino: 20,
        sock_id: embryo,
        peer_ino: 10,
        ..RawRecord::default()
    };
    let records = [client(0, 0), server, client(5, 20)].map(|r| r.encode());
    feed(&mut p, &mut sink, &records);
    let (first, reply, second) = (&sink.0[0].0, &sink.0[1].0, &sink.0[2].0);
    assert_eq!(
        first[24..40],
        reply[8..24],
        "request's destination is the server's source"
    );
    assert_eq!(reply[24..40], first[8..24]);
    assert_eq!(second[24..40], first[24..40]);
    assert_ne!(first[32..40], [0; 8]);
    assert_eq!(
        sink.1,
        vec![0, 10, 20],
        "peer_ino of the second request is known"
    );
}

/// The client's record of a send made before accept() can arrive after the server's
/// answer (its program ran late): the inode-less peer is still the accepted socket.
#[test]
fn late_record_from_before_accept() {
    let mut p = packetizer(None);
    let mut sink = Collect::new();
    let (client_ptr, server_ptr) = (Some(0xffff_0000_0000_1000), Some(0xffff_0000_0000_2000));
    let reply = RawRecord {
        sock_ino: 20,
        sock_id: server_ptr,
        peer_ino: 10,
        peer_id: client_ptr,
        ..RawRecord::default()
    };
    let request = RawRecord {
        sock_ino: 10,
        sock_id: client_ptr,
        peer_ino: 0,
        peer_id: server_ptr,
        ..RawRecord::default()
    };
    feed(&mut p, &mut sink, &[reply.encode(), request.encode()]);
    let (reply, request) = (&sink.0[0].0, &sink.0[1].0);
    assert_eq!(request[24..40], reply[8..24], "one conversation");
    assert_eq!(request[8..24], reply[24..40]);
}

/// Closed sockets' memory is reused at once: a new connection at the same kernel
/// addresses is a new conversation, not a continuation of the old one.
#[test]
fn reused_kernel_addresses_are_new_sockets() {
    let mut p = packetizer(None);
    let mut sink = Collect::new();
    let (client_ptr, server_ptr) = (Some(0xffff_0000_0000_1000), Some(0xffff_0000_0000_2000));
    let conversation = |client_ino, server_ino| {
        [
            RawRecord {
                sock_ino: client_ino,
                sock_id: client_ptr,
                peer_ino: 0,
                peer_id: server_ptr,
                ..RawRecord::default()
            },
            RawRecord {
                sock_ino: server_ino,
                sock_id: server_ptr,
                peer_ino: client_ino,
                peer_id: client_ptr,
                ..RawRecord::default()
            },
        ]
    };
    let records: Vec<Vec<u8>> = conversation(10, 20)
        .into_iter()
        .chain(conversation(30, 40))
        .map(|r| r.encode())
        .collect();
    feed(&mut p, &mut sink, &records);
    let addr = |i: usize, at: usize| sink.0[i].0[at..at + 16].to_vec();
    // Within each conversation the two ends match...
    assert_eq!(addr(0, 24), addr(1, 8));
    assert_eq!(addr(2, 24), addr(3, 8));
    // ...and the second conversation has neither address of the first.
    assert_ne!(addr(2, 8), addr(0, 8));
    assert_ne!(addr(2, 24), addr(0, 24));
    assert_eq!(sink.1, vec![0, 10, 0, 30]);
}

#[test]
fn count_limit_stops_mid_message() {
    let mut p = packetizer(Some(2));
    let mut sink = Collect::new();
    let big = u64::from(udstrace_common::record::SEGMENT_MAX) * 3;
    let r = RawRecord {
        msg_len: big,
        payload: vec![],
        flags: udstrace_common::record::flags::LAST,
        ..RawRecord::default()
    }
    .encode();
    feed(&mut p, &mut sink, &[r]);
    assert_eq!(sink.0.len(), 2);
    assert!(p.done());
}

#[test]
fn one_record_one_packet() {
    let bytes = RawRecord::default().encode();
    let seg = SendSegment::try_from(bytes.as_slice()).unwrap();
    let all: Vec<_> = slices(&seg).collect();
    assert_eq!(
        all,
        vec![Slice {
            stream_offset: 0,
            seg_offset: 0,
            orig_len: 5,
            payload: b"hello"
        }]
    );
}

#[test]
fn truncated_message_gets_header_only_trailing_packets() {
    let msg_len = u64::from(SEGMENT_MAX) * 2 + 100;
    let bytes = RawRecord {
        msg_len,
        stream_offset: 1000,
        payload: vec![1; 10],
        ..RawRecord::default()
    }
    .encode();
    let seg = SendSegment::try_from(bytes.as_slice()).unwrap();
    let all: Vec<_> = slices(&seg).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].orig_len, SEGMENT_MAX);
    assert_eq!(all[0].payload.len(), 10);
    assert_eq!(all[1].stream_offset, 1000 + u64::from(SEGMENT_MAX));
    assert_eq!(all[1].orig_len, SEGMENT_MAX);
    assert!(all[1].payload.is_empty());
    assert_eq!(all[2].orig_len, 100);
    assert_eq!(all[2].seg_offset, u64::from(SEGMENT_MAX) * 2);
}

#[test]
fn middle_record_has_no_trailing_packets() {
    let msg_len = u64::from(SEGMENT_MAX) * 2;
    let bytes = RawRecord {
        msg_len,
        flags: 0,
        payload: vec![1; SEGMENT_MAX as usize],
        ..RawRecord::default()
    }
    .encode();
    let seg = SendSegment::try_from(bytes.as_slice()).unwrap();
    assert_eq!(slices(&seg).count(), 1);
}
