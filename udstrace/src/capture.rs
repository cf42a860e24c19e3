//! The capture loop: drains the ring buffer, turns records into packets, writes them, and
//! stops cleanly on SIGINT/SIGTERM, `-c`, or an output error.

use std::{
    collections::HashMap,
    hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState},
    io,
    path::PathBuf,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
};
use udstrace_common::SockType;

use crate::{
    clock::WallClock,
    decode::Decoders,
    error::Error,
    fds,
    filter::Filter,
    meta::{write_ancillary, PacketView},
    packet::{packets, port, write_headers, Flow, MAX_HEADER_LEN},
    pcapng::{CaptureInfo, Stats, DIRECTION_INBOUND, DIRECTION_OUTBOUND},
    peers::PeerResolver,
    record::{Ancillary, Record, SendSegment},
    sink::{self, Packet, Sink},
    text::PayloadStyle,
    tracer::{Tracer, TracerConfig},
};

/// Records handled before the loop looks at signals and timers again.
const BATCH: usize = 4096;

/// Sockets remembered for ACK numbers and peer inodes before the tables are emptied.
const MAX_TRACKED_SOCKETS: usize = 1 << 18;

/// Threads with control data waiting for their message before the table is emptied (each
/// entry is normally taken by the record that follows it at once).
const MAX_PENDING_ANCILLARY: usize = 4096;

/// How often the ring buffer is drained without a wakeup from the kernel (which wakes
/// userspace only when an eighth of the buffer is waiting).
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// How often buffered output is made visible (pipes, Wireshark, the terminal).
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// A capture's settings.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub tracer: TracerConfig,
    /// `-w`: pcapng to this path (`-` for standard output); text view without it.
    pub write: Option<PathBuf>,
    /// `-c`: stop after this many packets.
    pub count: Option<u64>,
    pub style: PayloadStyle,
    pub verbose: bool,
    /// Records to keep (beyond the kernel's process filter).
    pub filter: Filter,
    pub decoders: Decoders,
    /// Print capture statistics on stderr every second.
    pub stats: bool,
    /// Ring buffer size, for the statistics.
    pub ring_bytes: u32,
}

/// What a capture did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub packets: u64,
    pub lost_segments: u64,
    pub lost_bytes: u64,
    /// Calls whose return the kernel did not report (their messages are lost).
    pub missed_returns: u64,
    pub malformed: u64,
}

/// Turns decoded records into packets: headers, acknowledgement numbers, drop counts.
pub struct Packetizer {
    clock: WallClock,
    /// Keys the hash that turns kernel socket identities into address identifiers, so that
    /// no kernel address is written out.
    id_key: u64,
    /// Per kernel socket address: its generation (see `identity`), inode (0: none yet) and
    /// the identifier of its peer as its own records last said (0: unknown).
    sockets: HashMap<u64, (u64, u64, u64)>,
    next_generation: u64,
    /// Per stream socket: the offset after the last byte it was seen sending.
    next_offset: HashMap<u64, u64>,
    /// Per socket: the port its name gives it (0: none), as the decoders said.
    ports: HashMap<u64, u16>,
    decoders: Decoders,
    filter: Filter,
    /// Who holds each peer socket.
    peers: PeerResolver,
    /// Per kernel socket address: the process last seen sending on it.
    last_sender: HashMap<u64, u32>,
    /// Per thread: the control data of the next message it sends (see `ancillary`).
    pending: HashMap<u32, Ancillary>,
    /// The comment keys of the current message's control data.
    ancillary: String,
    /// Where the senders' descriptor tables are (`/proc`).
    proc: PathBuf,
    reported_lost: u64,
    headers: [u8; MAX_HEADER_LEN],
    pub packets: u64,
    /// Payload bytes written.
    pub bytes: u64,
    limit: Option<u64>,
}

impl Packetizer {
    #[must_use]
    pub fn new(clock: WallClock, limit: Option<u64>) -> Self {
        Self {
            clock,
            id_key: RandomState::new().hash_one(0u64),
            sockets: HashMap::new(),
            next_generation: 0,
            next_offset: HashMap::new(),
            ports: HashMap::new(),
            decoders: Decoders::new(&[]).expect("the built-in rules parse"),
            filter: Filter::default(),
            peers: PeerResolver::default(),
            last_sender: HashMap::new(),
            pending: HashMap::new(),
            ancillary: String::new(),
            proc: PathBuf::from("/proc"),
            reported_lost: 0,
            headers: [0; MAX_HEADER_LEN],
            packets: 0,
            bytes: 0,
            limit,
        }
    }

    /// Sets the key of the socket identifier hash (random by default), for reproducible
    /// output.
    #[must_use]
    pub fn with_id_key(mut self, key: u64) -> Self {
        self.id_key = key;
        self
    }

    /// Resolves peer processes with `peers` (tests give a fixed table).
    #[must_use]
    pub fn with_peers(mut self, peers: PeerResolver) -> Self {
        self.peers = peers;
        self
    }

    /// Keeps only the records `filter` matches.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Chooses service ports with `decoders`.
    #[must_use]
    pub fn with_decoders(mut self, decoders: Decoders) -> Self {
        self.decoders = decoders;
        self
    }

    /// Whether the packet limit has been reached.
    #[must_use]
    pub fn done(&self) -> bool {
        self.limit.is_some_and(|l| self.packets >= l)
    }

    /// Keeps a message's control data until the thread's message arrives: the record comes
    /// first from the same thread. An earlier one still waiting was a failed send's.
    pub fn ancillary(&mut self, a: Ancillary) {
        if self.pending.len() > MAX_PENDING_ANCILLARY {
            self.pending.clear();
        }
        self.pending.insert(a.tid, a);
    }

    /// Writes the packets of one record to `sink`.
    pub fn record(&mut self, seg: &SendSegment<'_>, sink: &mut dyn Sink) -> io::Result<()> {
        // The tables grow by one entry per socket ever seen: bound them on long captures.
        // Forgetting costs ACK numbers, and a live socket seen again after it gets a new
        // address (its conversation continues as a new one in Wireshark).
        if self.sockets.len() > MAX_TRACKED_SOCKETS {
            self.sockets.clear();
            self.next_offset.clear();
            self.ports.clear();
            self.last_sender.clear();
        }
        let mut seg = *seg;
        if seg.peer_id == 0 && seg.peer_ino == 0 && !seg.peer_path.is_empty() {
            // An unconnected datagram: the socket bound to the address it was sent to.
            seg.peer_ino = self.peers.bound(seg.peer_path);
        }
        let seg = &seg;
        self.ancillary.clear();
        if seg.seg_offset == 0 && !self.pending.is_empty() {
            if let Some(a) = self.pending.remove(&seg.tid) {
                if a.sock_id == seg.sock_id {
                    let proc = &self.proc;
                    write_ancillary(&mut self.ancillary, &a, &mut |fd| {
                        fds::describe(proc, a.pid, fd)
                    });
                }
            }
        }
        self.last_sender.insert(seg.sock_id, seg.pid);
        let own_id = self.identity(seg.sock_id, seg.sock_ino, 0);
        let peer_id = self.identity(seg.peer_id, seg.peer_ino, own_id);
        if peer_id != 0 {
            if let Some(own) = self.sockets.get_mut(&seg.sock_id) {
                own.2 = peer_id;
            }
        }
        if !self.filter.matches(seg) {
            return Ok(());
        }
        let ts_ns = self.clock.wall_ns(seg.ts_boot_ns);
        let own_port = self
            .service_port(own_id, seg.path)
            .unwrap_or_else(|| port(own_id));
        let peer_port = self
            .service_port(peer_id, seg.peer_path)
            .unwrap_or_else(|| port(peer_id));
        // A receive travels from the peer to the reading socket.
        let recv = seg.is_recv();
        let ((src_id, src_port), (dst_id, dst_port)) = if recv {
            ((peer_id, peer_port), (own_id, own_port))
        } else {
            ((own_id, own_port), (peer_id, peer_port))
        };
        let flow = Flow {
            sock_type: seg.sock_type,
            src_id,
            dst_id,
            src_port,
            dst_port,
        };
        let ack = if seg.sock_type == SockType::Stream {
            self.next_offset.get(&dst_id).copied()
        } else {
            None
        };
        let peers = if seg.peer_ino == 0 && seg.peer_id != 0 && !seg.peer_path.is_empty() {
            // A connection not yet accepted: its server end is in the listener's queue, and
            // whoever holds the listener will accept it.
            let listener = self.peers.bound(seg.peer_path);
            self.peers.holders(listener, seg.pid, b"", None)
        } else {
            let peer_sender = self.last_sender.get(&seg.peer_id).copied();
            self.peers
                .holders(seg.peer_ino, seg.pid, seg.peer_path, peer_sender)
        };
        for (index, pkt) in packets(seg).enumerate() {
            if self.limit.is_some_and(|l| self.packets >= l) {
                break;
            }
            let header_len = write_headers(&mut self.headers, &flow, &pkt, ack);
            let drops = seg.lost_segments.saturating_sub(self.reported_lost);
            self.reported_lost = self.reported_lost.max(seg.lost_segments);
            sink.packet(&Packet {
                view: PacketView::new(
                    seg,
                    &pkt,
                    ts_ns,
                    peers,
                    if index == 0 { &self.ancillary } else { "" },
                ),
                headers: &self.headers[..header_len],
                direction: if recv {
                    DIRECTION_INBOUND
                } else {
                    DIRECTION_OUTBOUND
                },
                drops,
            })?;
            self.packets += 1;
            self.bytes += pkt.payload.len() as u64;
        }
        if seg.sock_type == SockType::Stream && seg.is_last() && !recv {
            let end = seg.stream_offset - seg.seg_offset + seg.msg_len;
            self.next_offset.insert(src_id, end);
        }
        Ok(())
    }

    /// The address identifier of the socket at kernel address `ptr` whose inode the record
    /// says is `ino` (0: none yet). The kernel reuses the
    /// memory of closed sockets at once, so an address alone does not name a socket: a new
    /// inode at a known address, or a socket without inode (not yet accepted) at an address
    /// that had one, is a new socket and gets a new generation. A socket without inode that
    /// later shows its inode keeps its identifier, and so does one named without inode by
    /// the socket with identifier `seen_from` (whose record names it as its peer) when its
    /// own records said it is connected to that very socket: a record written before the
    /// accept, read after the accepted socket's (the client's program ran after the server
    /// had already answered).
    fn identity(&mut self, ptr: u64, ino: u64, seen_from: u64) -> u64 {
        if ptr == 0 {
            return 0;
        }
        let next_generation = &mut self.next_generation;
        let mut fresh = || {
            *next_generation += 1;
            *next_generation
        };
        let known = self.sockets.entry(ptr).or_insert_with(|| (fresh(), ino, 0));
        if known.1 != ino {
            if known.1 == 0 {
                known.1 = ino;
            } else if ino != 0 || seen_from == 0 || known.2 != seen_from {
                *known = (fresh(), ino, 0);
            }
        }
        let generation = known.0;
        let mut h = DefaultHasher::new();
        (self.id_key, ptr, generation).hash(&mut h);
        h.finish().max(1)
    }

    /// The port a socket's name gives it, remembered per socket.
    fn service_port(&mut self, id: u64, name: &[u8]) -> Option<u16> {
        if name.is_empty() {
            return None;
        }
        let decoders = &self.decoders;
        let port = *self
            .ports
            .entry(id)
            .or_insert_with(|| decoders.port(name).unwrap_or(0));
        (port != 0).then_some(port)
    }
}

fn capture_info(snaplen: u32, backend: &str) -> CaptureInfo {
    let uname = rustix_uname();
    CaptureInfo {
        section_comment: "udstrace capture of Unix domain socket traffic. The IPv6, TCP and UDP headers are \
                          synthesised, not captured: addresses are fd75:6473::<socket id>, TCP for stream \
                          sockets (sequence number = the socket's byte offset), UDP for dgram and seqpacket \
                          sockets. Who sent each packet is in its comment."
            .into(),
        hardware: std::env::consts::ARCH.into(),
        os: uname,
        application: format!("udstrace {}", env!("CARGO_PKG_VERSION")),
        if_name: "udstrace".into(),
        if_description: format!(
            "Unix domain sockets (AF_UNIX), captured by eBPF ({backend} backend); IPv6/TCP/UDP headers synthesised"
        ),
        snaplen: snaplen.min(udstrace_common::record::SEGMENT_MAX) + MAX_HEADER_LEN as u32,
    }
}

fn rustix_uname() -> String {
    let read = |f: &str| {
        std::fs::read_to_string(f)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    format!("Linux {}", read("/proc/sys/kernel/osrelease"))
}

/// Runs a capture to the end.
pub fn run(opts: &CaptureOptions) -> Result<Summary, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Ring)?
        .block_on(capture(opts))
}

fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

async fn capture(opts: &CaptureOptions) -> Result<Summary, Error> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(Error::Signals)?;

    let mut tracer = Tracer::start(&opts.tracer)?;
    // The output is opened once the programs are attached, so that a capture file is only
    // created when there will be a capture; nothing stays attached if it fails (Drop).
    let info = capture_info(opts.tracer.snaplen, tracer.backend.name());
    let (mut sink, out_path) = sink::open(opts.write.as_deref(), &info, opts.style)?;
    let output_error = |source: io::Error| Error::Output {
        path: out_path.clone(),
        source,
    };

    announce(&tracer, opts);

    let start_ns = WallClock::now();
    let mut packetizer = Packetizer::new(WallClock::new(), opts.count)
        .with_filter(opts.filter.clone())
        .with_decoders(opts.decoders.clone());
    let mut summary = Summary::default();
    // SAFETY: the ring buffer owns its map fd, which stays open and the same for as long as
    // the AsyncFd owns the ring buffer.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(tracer.take_events(), Interest::READABLE) }
            .map_err(|e| Error::Ring(e.into()))?;
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    stats_tick.tick().await;
    let mut result: Result<(), io::Error> = Ok(());

    'capture: while !packetizer.done() {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(Error::Ring)?;
                match drain(guard.get_inner_mut(), Some(BATCH), &mut packetizer, sink.as_mut(), &mut summary) {
                    Err(e) => {
                        result = Err(e);
                        break 'capture;
                    }
                    Ok(Drained::All) => guard.clear_ready(),
                    Ok(Drained::Limit) => break 'capture,
                    Ok(Drained::Batch) => {
                        // Records remain: let the runtime poll its drivers (signals, timers)
                        // before the next batch; the fd stays ready.
                        drop(guard);
                        tokio::task::yield_now().await;
                    }
                }
            }
            _ = drain_tick.tick() => {
                match drain(ring.get_mut(), Some(BATCH), &mut packetizer, sink.as_mut(), &mut summary) {
                    Ok(Drained::All | Drained::Batch) => {}
                    Ok(Drained::Limit) => break 'capture,
                    Err(e) => {
                        result = Err(e);
                        break 'capture;
                    }
                }
            }
            _ = stats_tick.tick(), if opts.stats => print_stats(&mut tracer, &packetizer, opts.ring_bytes),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = tick.tick() => {
                if let Err(e) = sink.flush() {
                    result = Err(e);
                    break;
                }
            }
        }
    }

    // Stop capturing, then write what the kernel had already recorded.
    // Before detaching: while the programs come off one by one, calls may enter without
    // leaving, and those are not lost messages.
    let missed_returns = tracer.missed_returns();
    tracer.detach();
    if result.is_ok() {
        if let Err(e) = drain(
            ring.get_mut(),
            None,
            &mut packetizer,
            sink.as_mut(),
            &mut summary,
        ) {
            result = Err(e);
        }
    }
    let (lost_segments, lost_bytes) = tracer.lost();
    summary.packets = packetizer.packets;
    summary.lost_segments = lost_segments;
    summary.lost_bytes = lost_bytes;
    summary.missed_returns = missed_returns;
    let stats = Stats {
        start_ns,
        end_ns: WallClock::now(),
        received: summary.packets + lost_segments + summary.missed_returns,
        dropped: lost_segments + summary.missed_returns,
    };
    match result.and_then(|()| sink.finish(&stats)) {
        Ok(()) => Ok(summary),
        Err(e) if is_broken_pipe(&e) => Ok(summary),
        Err(e) => Err(output_error(e)),
    }
}

/// The lines that say the capture has started (and, when asked or chosen automatically,
/// which backend it uses and why).
fn announce(tracer: &Tracer, opts: &CaptureOptions) {
    if opts.verbose || opts.tracer.backend.is_none() {
        let why = if tracer.skipped.is_empty() {
            String::new()
        } else {
            format!(" (skipped {})", tracer.skipped.join("; "))
        };
        eprintln!("udstrace: using the {} backend{why}", tracer.backend);
    }
    eprintln!(
        "listening on udstrace ({} backend), link-type RAW (Unix sockets as synthesised IPv6), \
         snapshot length {} bytes",
        tracer.backend, opts.tracer.snaplen
    );
}

/// `--stats`: one line a second.
fn print_stats(tracer: &mut Tracer, packetizer: &Packetizer, ring_bytes: u32) {
    let lost = tracer.lost().0 + tracer.missed_returns();
    let peak_percent = tracer.ring_peak() * 100 / u64::from(ring_bytes.max(1));
    eprintln!(
        "udstrace: {} packets, {} bytes, {lost} lost, ring buffer peak {peak_percent}% full",
        packetizer.packets, packetizer.bytes
    );
}

/// How a drain ended.
enum Drained {
    /// The ring buffer is empty.
    All,
    /// The batch is done; records remain.
    Batch,
    /// The packet limit (`-c`) was reached.
    Limit,
}

/// Handles records until the ring buffer is empty, `batch` records were handled, or the packet
/// limit is reached.
fn drain(
    events: &mut RingBuf<MapData>,
    batch: Option<usize>,
    packetizer: &mut Packetizer,
    sink: &mut dyn Sink,
    summary: &mut Summary,
) -> io::Result<Drained> {
    let mut handled = 0;
    loop {
        if packetizer.done() {
            return Ok(Drained::Limit);
        }
        if batch.is_some_and(|b| handled >= b) {
            return Ok(Drained::Batch);
        }
        let Some(item) = events.next() else {
            return Ok(Drained::All);
        };
        handle(&item, packetizer, sink, summary)?;
        handled += 1;
    }
}

fn handle(
    item: &[u8],
    packetizer: &mut Packetizer,
    sink: &mut dyn Sink,
    summary: &mut Summary,
) -> io::Result<()> {
    match Record::try_from(item) {
        Ok(Record::Send(seg)) => packetizer.record(&seg, sink),
        Ok(Record::Ancillary(a)) => {
            packetizer.ancillary(a);
            Ok(())
        }
        Err(e) => {
            if summary.malformed == 0 {
                eprintln!("udstrace: skipping a malformed record: {e}");
            }
            summary.malformed += 1;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::Fixed;
    use crate::record::testing::RawRecord;

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
                .push((p.headers.to_vec(), p.view.payload.to_vec(), p.drops));
            self.1.push(p.view.peer_ino);
            self.2.push((p.direction, p.view.recv));
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
}
