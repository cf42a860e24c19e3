//! Records to packets: each decoded record becomes one packet per segment, with the
//! synthesised headers that make a socket conversation an IPv6 one (addresses from a
//! capture-private hash of the kernel's socket identities, TCP sequence and acknowledgement
//! numbers), the receivers named, control data attached, and losses counted.

use std::{
    borrow::Cow,
    collections::HashMap,
    hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState},
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use udstrace_common::{record::SEGMENT_MAX, SockType};

use super::{clock::WallClock, control, filter::Filter, recent::Recent};
use crate::{
    hash::FastMap,
    output::{
        headers::{port, write_headers, Flow, MAX_HEADER_LEN},
        ports::Ports,
        sink::Sink,
    },
    packet::{Bytes, Cut, Holder, Meta, Packet, PeerBy, Peers},
    proc::{container_names::ContainerNames, fds, peers::PeerResolver},
    tracer::record::{Ancillary, Receiver, SendSegment},
};

/// Sockets remembered for ACK numbers, addresses and peers, per generation of each table
/// (`Recent`: a socket in use is never forgotten; one silent while this many others came
/// is). 7/8 of 2^16: each generation fills a table of 65,536 slots, about 2 MB for the
/// largest; all four tables together hold at most about 11 MB, whatever the rate of new
/// sockets.
const MAX_TRACKED_SOCKETS: usize = 57_344;

/// Threads with control data waiting for their message before the table is emptied (each
/// entry is normally taken by the record that follows it at once).
const MAX_PENDING_ANCILLARY: usize = 4096;

/// One packet's share of a record: a segment of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slice<'a> {
    /// Socket byte offset of the segment's first byte.
    stream_offset: u64,
    /// Offset of the segment in its message.
    seg_offset: u64,
    /// Payload bytes the segment had on the wire.
    orig_len: u32,
    /// The bytes captured of them (a prefix).
    payload: &'a [u8],
}

/// What the packetizer knows of a socket at a kernel address (see `Packetizer::identity`).
#[derive(Debug, Clone, Copy)]
struct Known {
    /// Its inode; 0: none yet.
    ino: u64,
    /// Its address identifier: a keyed hash of the kernel address and the generation.
    id: u64,
    /// The identifier of its peer, as its own records last said; 0: unknown.
    peer: u64,
}

/// The packets one record stands for: its own segment, and for the last record of a message,
/// the segments after it that the kernel had no payload for (cut by the snap length, or not
/// readable). Those carry headers only.
fn slices<'a>(seg: &SendSegment<'a>) -> impl Iterator<Item = Slice<'a>> {
    let first = Slice {
        stream_offset: seg.stream_offset,
        seg_offset: seg.seg_offset,
        orig_len: seg.seg_len() as u32,
        payload: seg.payload,
    };
    let step = u64::from(SEGMENT_MAX);
    let msg_len = seg.meta.msg_len;
    let message_start = seg.stream_offset - seg.seg_offset;
    let trailing_from = if seg.is_last() {
        seg.seg_offset + step
    } else {
        msg_len
    };
    std::iter::once(first).chain(
        (trailing_from..msg_len)
            .step_by(step as usize)
            .map(move |off| Slice {
                stream_offset: message_start + off,
                seg_offset: off,
                orig_len: (msg_len - off).min(step) as u32,
                payload: &[],
            }),
    )
}

/// Turns decoded records into packets: headers, acknowledgement numbers, drop counts.
pub(crate) struct Packetizer {
    clock: WallClock,
    /// Keys the hash that turns kernel socket identities into address identifiers, so that
    /// no kernel address is written out.
    id_key: u64,
    /// Per kernel socket address: what is known of the socket there (see `identity`).
    sockets: Recent<u64, Known>,
    next_generation: u64,
    /// Per stream socket: the offset after the last byte it was seen sending.
    next_offset: Recent<u64, u64>,
    /// Per socket: the port its name gives it (0: none).
    port_of: Recent<u64, u16>,
    ports: Ports,
    filter: Filter,
    /// Who holds each peer socket.
    peers: PeerResolver,
    /// The containers of senders and receivers.
    containers: ContainerNames,
    /// The receivers the kernel named.
    kernel_receivers: KernelReceivers,
    /// Per kernel socket address: the process last seen sending on it.
    last_sender: Recent<u64, u32>,
    /// `forgotten()` when memory was last handed back.
    trimmed_at: u64,
    /// Per thread: the control data of the next message it sends (see `ancillary`).
    pending: HashMap<u32, Ancillary>,
    /// Where the senders' descriptor tables are (`/proc`).
    proc: PathBuf,
    reported_lost: u64,
    headers: [u8; MAX_HEADER_LEN],
    pub(crate) packets: u64,
    /// Payload bytes written.
    pub(crate) bytes: u64,
    limit: Option<u64>,
}

impl Packetizer {
    #[must_use]
    pub(crate) fn new(clock: WallClock, limit: Option<u64>) -> Self {
        Self {
            clock,
            id_key: RandomState::new().hash_one(0u64),
            sockets: Recent::new(MAX_TRACKED_SOCKETS),
            next_generation: 0,
            next_offset: Recent::new(MAX_TRACKED_SOCKETS),
            port_of: Recent::new(MAX_TRACKED_SOCKETS),
            ports: Ports::new(&[]).expect("the built-in rules parse"),
            filter: Filter::default(),
            peers: PeerResolver::default(),
            containers: ContainerNames::system(Path::new("/")),
            kernel_receivers: KernelReceivers::default(),
            last_sender: Recent::new(MAX_TRACKED_SOCKETS),
            trimmed_at: 0,
            pending: HashMap::new(),
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
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_id_key(mut self, key: u64) -> Self {
        self.id_key = key;
        self
    }

    /// Names containers from the runtimes' state under `host_root` instead of `/`
    /// (`--host-root`).
    #[must_use]
    pub(crate) fn with_host_root(mut self, host_root: &Path) -> Self {
        self.peers = PeerResolver::system(host_root);
        self.containers = ContainerNames::system(host_root);
        self
    }

    /// Names containers with `containers` (tests name none, or give a fixed machine).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_containers(mut self, containers: ContainerNames) -> Self {
        self.containers = containers;
        self
    }

    /// Resolves peer processes with `peers` (tests give a fixed table).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_peers(mut self, peers: PeerResolver) -> Self {
        self.peers = peers;
        self
    }

    /// Keeps only the records `filter` matches.
    #[must_use]
    pub(crate) fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// The record filter, to add `--path` names found during the capture.
    pub(crate) fn filter_mut(&mut self) -> &mut Filter {
        &mut self.filter
    }

    /// Chooses service ports with `ports`.
    #[must_use]
    pub(crate) fn with_ports(mut self, ports: Ports) -> Self {
        self.ports = ports;
        self
    }

    /// Generations of the per-socket tables dropped so far: when it grows, memory was freed.
    fn forgotten(&self) -> u64 {
        self.sockets.turnovers
            + self.next_offset.turnovers
            + self.port_of.turnovers
            + self.last_sender.turnovers
    }

    /// Hands the memory of forgotten sockets back to the system when tables have dropped a
    /// generation since the last call: glibc keeps freed memory for later unless asked, and a
    /// burst of sockets would leave a lasting footprint. Called every second.
    pub(crate) fn trim(&mut self) {
        let forgotten = self.forgotten();
        if forgotten != self.trimmed_at {
            self.trimmed_at = forgotten;
            crate::sys::trim_heap();
        }
    }

    /// Tells whether the capture loop is behind the kernel (see `PeerResolver::set_behind`).
    pub(crate) fn set_behind(&mut self, behind: bool) {
        self.peers.set_behind(behind);
    }

    /// Packets whose receivers were not looked for in /proc because the capture was behind.
    #[must_use]
    pub(crate) fn lookups_skipped(&self) -> u64 {
        self.peers.skipped
    }

    /// Whether the packet limit has been reached.
    #[must_use]
    pub(crate) fn done(&self) -> bool {
        self.limit.is_some_and(|l| self.packets >= l)
    }

    /// Keeps a message's control data until the thread's message arrives: the record comes
    /// first from the same thread. An earlier one still waiting was a failed send's.
    pub(crate) fn ancillary(&mut self, a: Ancillary) {
        if self.pending.len() > MAX_PENDING_ANCILLARY {
            // A new table: `clear` would keep the old one's memory.
            self.pending = HashMap::new();
        }
        self.pending.insert(a.tid, a);
    }

    /// Learns the path of a cgroup created during the capture.
    pub(crate) fn cgroup_created(&mut self, id: u64, path: &[u8]) {
        self.containers.cgroup_created(id, path);
    }

    /// Writes the packets of one record to `sink`.
    pub(crate) fn record(&mut self, seg: &SendSegment<'_>, sink: &mut dyn Sink) -> io::Result<()> {
        // The per-socket tables forget the sockets unused the longest (`Recent`): a socket
        // silent while MAX_TRACKED_SOCKETS others came loses its ACK numbers and, seen
        // again, gets a new address (its conversation continues as a new one in Wireshark).
        let mut base = seg.meta.clone();
        if seg.peer_id == 0 && base.peer_ino == 0 && !base.peer_path.is_empty() {
            // An unconnected datagram: the socket bound to the address it was sent to.
            base.peer_ino = self.peers.bound(&base.peer_path);
        }
        self.last_sender.insert(seg.sock_id, base.pid);
        let own_id = self.identity(seg.sock_id, base.ino, 0);
        let peer_id = self.identity(seg.peer_id, base.peer_ino, own_id);
        if peer_id != 0 {
            if let Some(own) = self.sockets.get_mut(&seg.sock_id) {
                own.peer = peer_id;
            }
        }
        // Control data waits for its message whether or not the message is kept.
        let control = if seg.seg_offset == 0 && !self.pending.is_empty() {
            self.pending
                .remove(&base.tid)
                .filter(|a| a.sock_id == seg.sock_id)
        } else {
            None
        };
        if !self.filter.matches(&base, seg.peer_id != 0) {
            return Ok(());
        }
        let ts_ns = self.clock.wall_ns(seg.ts_boot_ns);
        let recv = base.is_recv();
        let (flow, ack) = self.flow(&base, own_id, peer_id);
        let (peers, by) = receivers(
            &mut self.peers,
            &mut self.kernel_receivers,
            &mut self.containers,
            &self.last_sender,
            &base,
            seg,
        );
        base.peers = Peers(Cow::Borrowed(peers));
        base.peer_by = by;
        if let Some(named) = self.containers.of_sender(base.cgroup, base.pid) {
            base.container = Some(Bytes(Cow::Borrowed(named.label.as_bytes())));
            base.container_id = Some(Bytes(Cow::Borrowed(named.id.as_bytes())));
            base.runtime = Some(Bytes(Cow::Borrowed(named.runtime.as_bytes())));
            base.pod = named
                .pod
                .as_deref()
                .map(|p| Bytes(Cow::Borrowed(p.as_bytes())));
        }
        // The message's first packet carries its control data.
        let mut first = control.map(|a| {
            let mut meta = base.clone();
            let proc = &self.proc;
            control::apply(&mut meta, &a, &mut |fd| fds::describe(proc, a.pid, fd));
            meta
        });
        // Noted before the loop, which hands `base` itself to the message's last packet.
        if base.sock_type == SockType::Stream && seg.is_last() && !recv {
            let end = seg.stream_offset - seg.seg_offset + base.msg_len;
            // A send travels from the sending socket: its own offsets are the peer's ACK numbers.
            self.next_offset.insert(own_id, end);
        }
        let mut base = Some(base);
        let mut slices = slices(seg).peekable();
        while let Some(slice) = slices.next() {
            if self.limit.is_some_and(|l| self.packets >= l) {
                break;
            }
            let header_len = write_headers(
                &mut self.headers,
                &flow,
                slice.stream_offset,
                slice.orig_len,
                slice.payload,
                ack,
            );
            let drops = seg.lost_segments.saturating_sub(self.reported_lost);
            self.reported_lost = self.reported_lost.max(seg.lost_segments);
            let mut meta = match first.take() {
                Some(with_control) => with_control,
                None if slices.peek().is_none() => base.take().unwrap_or_default(),
                None => base.clone().unwrap_or_default(),
            };
            meta.seg_offset =
                (meta.msg_len > u64::from(slice.orig_len)).then_some(slice.seg_offset);
            meta.payload =
                (slice.payload.len() < slice.orig_len as usize).then(|| Cut::from_flags(seg.flags));
            sink.packet(&Packet {
                ts_ns,
                meta,
                orig_len: slice.orig_len,
                payload: slice.payload,
                headers: &self.headers[..header_len],
                drops,
            })?;
            self.packets += 1;
            self.bytes += slice.payload.len() as u64;
        }
        Ok(())
    }

    /// The addressing of the packets of a message described by `meta` between the sockets
    /// with identifiers `own_id` and `peer_id`, and the acknowledgement number of a stream's
    /// packets when known.
    fn flow(&mut self, meta: &Meta<'_>, own_id: u64, peer_id: u64) -> (Flow, Option<u64>) {
        let own_port = self
            .service_port(own_id, &meta.path)
            .unwrap_or_else(|| port(own_id));
        let peer_port = self
            .service_port(peer_id, &meta.peer_path)
            .unwrap_or_else(|| port(peer_id));
        // A receive travels from the peer to the reading socket.
        let ((src_id, src_port), (dst_id, dst_port)) = if meta.is_recv() {
            ((peer_id, peer_port), (own_id, own_port))
        } else {
            ((own_id, own_port), (peer_id, peer_port))
        };
        let flow = Flow {
            sock_type: meta.sock_type,
            src_id,
            dst_id,
            src_port,
            dst_port,
        };
        let ack = if meta.sock_type == SockType::Stream {
            self.next_offset.peek(&dst_id).copied()
        } else {
            None
        };
        (flow, ack)
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
        let id_key = self.id_key;
        // The identifier is hashed once per generation, not per packet.
        let mut fresh = || {
            *next_generation += 1;
            let mut h = DefaultHasher::new();
            (id_key, ptr, *next_generation).hash(&mut h);
            Known {
                ino,
                id: h.finish().max(1),
                peer: 0,
            }
        };
        let known = self.sockets.get_or_insert_with(ptr, &mut fresh);
        if known.ino != ino {
            if known.ino == 0 {
                known.ino = ino;
            } else if ino != 0 || seen_from == 0 || known.peer != seen_from {
                *known = fresh();
            }
        }
        known.id
    }

    /// The port a socket's name gives it, remembered per socket.
    fn service_port(&mut self, id: u64, name: &[u8]) -> Option<u16> {
        if name.is_empty() {
            return None;
        }
        let ports = &self.ports;
        let port = *self
            .port_of
            .get_or_insert_with(id, || ports.port(name).unwrap_or(0));
        (port != 0).then_some(port)
    }
}

/// The processes that will read a message described by `meta`, sent to the socket with kernel
/// identity `peer_id`, and how they were known. The kernel's answer when it had one at send
/// time (the last process seen using the peer socket; for a connection not yet accepted, the
/// listener's owner by its peer credentials); otherwise the holders of the peer socket in
/// /proc, and the peer credentials' process when /proc has none (the socket is closed, or in
/// a namespace sock_diag does not see).
fn receivers<'p>(
    peers: &'p mut PeerResolver,
    named: &'p mut KernelReceivers,
    containers: &mut ContainerNames,
    last_sender: &Recent<u64, u32>,
    meta: &Meta<'_>,
    seg: &SendSegment<'_>,
) -> (&'p [Holder], Option<PeerBy>) {
    let now = Duration::from_nanos(seg.ts_boot_ns);
    let kernel = seg
        .receiver
        .filter(|r| r.by != PeerBy::Cred || meta.peer_ino == 0);
    if let Some(r) = kernel {
        return (named.holder(&r, containers), Some(r.by));
    }
    let found = if meta.peer_ino == 0 && seg.peer_id != 0 && !meta.peer_path.is_empty() {
        // A connection not yet accepted: its server end is in the listener's queue, and
        // whoever holds the listener will accept it.
        let listener = peers.bound(&meta.peer_path);
        peers.holders(listener, meta.pid, b"", None, now)
    } else {
        let peer_sender = last_sender.peek(&seg.peer_id).copied();
        peers.holders(meta.peer_ino, meta.pid, &meta.peer_path, peer_sender, now)
    };
    if !found.is_empty() {
        return (found, Some(PeerBy::Proc));
    }
    match seg.receiver {
        Some(r) => (named.holder(&r, containers), Some(r.by)),
        None => (&[], None),
    }
}

/// The receivers the kernel named, as holders, one per process (and command and cgroup):
/// named once, borrowed by the packets.
#[derive(Default)]
struct KernelReceivers(FastMap<(u32, u64), Holder>);

impl KernelReceivers {
    /// Processes remembered before the table is emptied.
    const MAX: usize = 65_536;

    fn holder(&mut self, r: &Receiver<'_>, containers: &mut ContainerNames) -> &[Holder] {
        let key = (r.pid, r.cgroup.unwrap_or(0));
        if self.0.get(&key).is_none_or(|h| h.comm.as_bytes() != r.comm) {
            if self.0.len() >= Self::MAX {
                self.0 = FastMap::default();
            }
            let container = containers
                .of_sender(r.cgroup, r.pid)
                .map(|c| c.label.clone())
                .unwrap_or_default();
            let holder = Holder {
                pid: r.pid,
                comm: String::from_utf8_lossy(r.comm).into_owned(),
                fd: 0,
                container,
            };
            self.0.insert(key, holder);
        }
        std::slice::from_ref(&self.0[&key])
    }
}

#[cfg(test)]
mod tests;
