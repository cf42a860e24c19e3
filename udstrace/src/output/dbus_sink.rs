//! D-Bus message packets: a sink in front of the output that passes every packet on as it is
//! and, for stream connections that speak D-Bus (a bus socket by name, `--decode PATH=dbus`, or
//! a stream that opens with the authentication exchange), reassembles each direction
//! (`dbus.rs`) and adds one packet per whole message, on the D-Bus interface, with the comment
//! of the packet that completed it plus `dbus=`. See docs/FORMAT.md, *D-Bus*.

use std::{borrow::Cow, io};

use udstrace_common::SockType;

use super::{
    dbus::{opens_auth, BusNames, Direction, Message},
    headers::{IPV6_LEN, TCP_LEN},
    pcapng::Stats,
    sink::Sink,
};
use crate::{
    hash::FastMap,
    packet::{Meta, Packet, Raw},
};

/// Connections followed at most; past this, those found not to speak D-Bus are forgotten
/// first (and looked at again), then all.
const MAX_CONNECTIONS: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not told yet; `true` when a lone NUL byte (libdbus's first write) came first.
    Unknown(bool),
    NotDbus,
    Dbus,
}

/// Control data of a packet, kept for the message that starts in it.
#[derive(Debug, Clone, Default)]
struct Control {
    /// Positions of the packet's bytes in its direction.
    start: u64,
    end: u64,
    cred_pid: Option<i32>,
    cred_uid: Option<u32>,
    cred_gid: Option<u32>,
    fds: String,
    cmsg: String,
    cut: String,
}

impl Control {
    fn of(meta: &Meta<'_>, start: u64, end: u64) -> Option<Self> {
        let any = meta.cred_pid.is_some()
            || !meta.fds.0.is_empty()
            || !meta.cmsg.0.is_empty()
            || !meta.control.0.is_empty();
        any.then(|| Self {
            start,
            end,
            cred_pid: meta.cred_pid,
            cred_uid: meta.cred_uid,
            cred_gid: meta.cred_gid,
            fds: meta.fds.0.to_string(),
            cmsg: meta.cmsg.0.to_string(),
            cut: meta.control.0.to_string(),
        })
    }
}

/// A D-Bus connection's state (about 400 bytes: kept only for connections that speak D-Bus,
/// not for every stream a capture sees).
#[derive(Debug)]
struct Connection {
    /// Indexed by whether the sender's identifier is the larger.
    dirs: [Direction; 2],
    next_seq: [Option<u32>; 2],
    control: [Option<Control>; 2],
}

/// The sink that adds D-Bus message packets to `inner`'s.
pub(crate) struct DbusSink {
    inner: Box<dyn Sink>,
    names: BusNames,
    /// By (smaller identifier, larger identifier, receive): sends and receives of the same
    /// bytes are followed apart.
    /// Whether each stream connection seen speaks D-Bus (a few bytes each).
    verdicts: FastMap<(u64, u64, bool), Verdict>,
    /// The state of those that do.
    connections: FastMap<(u64, u64, bool), Connection>,
    messages: Vec<Message>,
    note: String,
}

impl DbusSink {
    #[must_use]
    pub(crate) fn new(inner: Box<dyn Sink>, names: BusNames) -> Self {
        Self {
            inner,
            names,
            verdicts: FastMap::default(),
            connections: FastMap::default(),
            messages: Vec::new(),
            note: String::new(),
        }
    }

    /// The message packets `p` completes, written after it.
    fn derive(&mut self, p: &Packet<'_>) -> io::Result<()> {
        let h = p.headers;
        if p.meta.sock_type != SockType::Stream || h.len() < IPV6_LEN + TCP_LEN {
            return Ok(());
        }
        let id = |at: usize| u64::from_be_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let (src, dst) = (id(16), id(32));
        let seq = u32::from_be_bytes(h[44..48].try_into().expect("4 bytes"));
        let key = (src.min(dst), src.max(dst), p.meta.is_recv());
        let side = usize::from(src > dst);
        if !self.verdicts.contains_key(&key) && self.verdicts.len() >= MAX_CONNECTIONS {
            // Full: forget the connections that are not D-Bus (they are told again from their
            // next packet), then, if D-Bus ones alone fill it, everything.
            self.verdicts.retain(|_, v| *v == Verdict::Dbus);
            if self.verdicts.len() >= MAX_CONNECTIONS {
                self.verdicts.clear();
            }
            let verdicts = &self.verdicts;
            self.connections.retain(|k, _| verdicts.contains_key(k));
        }
        let named = || self.names.matches(&p.meta.path) || self.names.matches(&p.meta.peer_path);
        let verdict = self.verdicts.entry(key).or_insert(Verdict::Unknown(false));
        // libdbus's lone NUL, written before the authentication it opened.
        let mut lone_nul = false;
        match *verdict {
            Verdict::NotDbus => return Ok(()),
            Verdict::Dbus => {}
            Verdict::Unknown(_) if named() => *verdict = Verdict::Dbus,
            Verdict::Unknown(nul) => {
                let mut first = Vec::with_capacity(p.payload.len().min(8) + 1);
                if nul {
                    first.push(0);
                }
                first.extend_from_slice(&p.payload[..p.payload.len().min(8)]);
                match opens_auth(&first) {
                    Some(true) => {
                        *verdict = Verdict::Dbus;
                        lone_nul = nul;
                    }
                    None if p.payload == b"\0" && !nul => {
                        *verdict = Verdict::Unknown(true);
                        return Ok(());
                    }
                    Some(false) | None => {
                        *verdict = Verdict::NotDbus;
                        return Ok(());
                    }
                }
            }
        }
        let conn = self.connections.entry(key).or_insert_with(|| Connection {
            dirs: [Direction::default(), Direction::default()],
            next_seq: [None, None],
            control: [None, None],
        });
        let dir = &mut conn.dirs[side];
        if lone_nul {
            dir.feed(b"\0", &mut self.messages);
            conn.next_seq[side] = Some(seq);
        }
        if conn.next_seq[side].is_some_and(|expected| expected != seq) {
            dir.lose();
        }
        let start = dir.position();
        dir.feed(p.payload, &mut self.messages);
        if let Some(c) = Control::of(&p.meta, start, dir.position()) {
            conn.control[side] = Some(c);
        }
        if p.payload.len() < p.orig_len as usize {
            dir.lose();
        }
        conn.next_seq[side] = Some(seq.wrapping_add(p.orig_len));
        let control = &mut conn.control[side];
        write_messages(
            &mut *self.inner,
            p,
            self.messages.drain(..),
            control,
            &mut self.note,
        )
    }
}

/// Writes `messages`, which `p` completed, to `inner`; `control` goes with the one that
/// starts in its packet.
fn write_messages(
    inner: &mut dyn Sink,
    p: &Packet<'_>,
    messages: impl Iterator<Item = Message>,
    control: &mut Option<Control>,
    note: &mut String,
) -> io::Result<()> {
    for m in messages {
        let mut meta = p.meta.clone();
        meta.seg_offset = None;
        meta.payload = None;
        meta.cred_pid = None;
        meta.cred_uid = None;
        meta.cred_gid = None;
        meta.fds = Raw::default();
        meta.cmsg = Raw::default();
        meta.control = Raw::default();
        // The control data goes with the message that starts in its packet.
        if let Some(c) = control.take_if(|c| (c.start..c.end).contains(&m.start)) {
            meta.cred_pid = c.cred_pid;
            meta.cred_uid = c.cred_uid;
            meta.cred_gid = c.cred_gid;
            meta.fds = Raw(Cow::Owned(c.fds));
            meta.cmsg = Raw(Cow::Owned(c.cmsg));
            meta.control = Raw(Cow::Owned(c.cut));
        }
        note.clear();
        m.note.write(note);
        meta.dbus = Raw(Cow::Borrowed(note));
        inner.packet(&Packet {
            ts_ns: p.ts_ns,
            meta,
            orig_len: m.bytes.len() as u32,
            payload: &m.bytes,
            headers: &[],
            drops: 0,
        })?;
    }
    Ok(())
}

impl Sink for DbusSink {
    fn packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        self.inner.packet(p)?;
        self.derive(p)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        self.inner.finish(stats)
    }

    fn blocked(&self) -> bool {
        self.inner.blocked()
    }

    fn done(&self) -> bool {
        self.inner.done()
    }
}
