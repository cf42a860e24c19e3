//! Who holds the peer socket: the receiving processes of a message, from /proc/*/fd.
//!
//! The table comes from a scan of every process's descriptors, redone when a socket is
//! unknown or a holder no longer has it (a process exited, or passed the socket on and
//! closed its copy). Scans are spaced by at least ten times what the last one took (20 ms to
//! 1 s), so that sockets that vanish before a scan cannot make udstrace scan continuously; a
//! known entry is confirmed (one `readlink` per holder) when it is older than 20 ms.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use super::container_names::ContainerNames;
use crate::{
    hash::{FastMap, FastSet},
    packet::Holder,
    proc::sockets,
};

const MIN_RESCAN: Duration = Duration::from_millis(20);
const MAX_RESCAN: Duration = Duration::from_secs(1);
const CONFIRM_AFTER: Duration = Duration::from_millis(20);
/// Time looking for holders may take at first; then a tenth of the capture's time. A second:
/// on a slow machine (the 5.10 kernel under emulation, next to another guest) a lookup takes
/// tens of milliseconds, and 100 ms left the receivers of a test's first messages unnamed.
const BUDGET_START: Duration = Duration::from_secs(1);
/// Siblings of a sender looked at before a full scan, at most.
const MAX_SIBLINGS: usize = 64;
/// Sockets remembered as having their holders' containers named before the set is emptied.
const MAX_LABELLED: usize = 65_536;

/// Where the resolver learns who holds what.
pub(crate) trait Source {
    /// Every process's sockets.
    fn all(&self) -> HashMap<u64, Vec<Holder>>;
    /// One process's sockets.
    fn process(&self, pid: u32) -> Vec<(u64, Holder)>;
    fn parent(&self, pid: u32) -> Option<u32>;
    /// The children of process `pid` (of all its threads).
    fn children(&self, pid: u32) -> Vec<u32>;
    /// Whether the holder still has the socket at the same descriptor.
    fn still_holds(&self, h: &Holder, ino: u64) -> bool;
    /// Bound name -> inode of the sockets bound to names.
    fn bound_names(&self) -> HashMap<Vec<u8>, u64>;
}

/// The running system (`/proc`, sock_diag).
pub(crate) struct System;

impl Source for System {
    fn all(&self) -> HashMap<u64, Vec<Holder>> {
        sockets::holders()
    }
    fn process(&self, pid: u32) -> Vec<(u64, Holder)> {
        sockets::process_sockets(pid)
    }
    fn parent(&self, pid: u32) -> Option<u32> {
        sockets::parent(pid)
    }
    fn children(&self, pid: u32) -> Vec<u32> {
        sockets::children(pid)
    }
    fn still_holds(&self, h: &Holder, ino: u64) -> bool {
        sockets::still_holds(h, ino)
    }
    fn bound_names(&self) -> HashMap<Vec<u8>, u64> {
        sockets::bound_names()
    }
}

/// A fixed table that never changes (tests, golden files).
#[cfg(test)]
pub(crate) struct Fixed(pub(crate) HashMap<u64, Vec<Holder>>);

#[cfg(test)]
impl Source for Fixed {
    fn all(&self) -> HashMap<u64, Vec<Holder>> {
        self.0.clone()
    }
    fn process(&self, pid: u32) -> Vec<(u64, Holder)> {
        self.0
            .iter()
            .flat_map(|(&ino, list)| {
                list.iter()
                    .filter(|h| h.pid == pid)
                    .map(move |h| (ino, h.clone()))
            })
            .collect()
    }
    fn parent(&self, _: u32) -> Option<u32> {
        None
    }
    fn children(&self, _: u32) -> Vec<u32> {
        Vec::new()
    }
    fn still_holds(&self, h: &Holder, ino: u64) -> bool {
        self.0.get(&ino).is_some_and(|l| l.contains(h))
    }
    fn bound_names(&self) -> HashMap<Vec<u8>, u64> {
        HashMap::new()
    }
}

/// Socket inode -> the processes holding it.
pub(crate) struct PeerResolver {
    holders: FastMap<u64, Vec<Holder>>,
    /// When entries were last confirmed one by one (otherwise: as of the last scan).
    confirmed: FastMap<u64, Duration>,
    /// Sockets looked for in the likely processes and not found, and when.
    missed: FastMap<u64, Duration>,
    scanned: Option<Duration>,
    interval: Duration,
    source: Box<dyn Source + Send>,
    /// When the first lookup happened, and the time lookups have taken since.
    started: Option<Duration>,
    spent: Duration,
    /// Bound name -> socket inode.
    names: HashMap<Vec<u8>, u64>,
    names_scanned: Option<Instant>,
    /// Names the holders' containers, once per entry of `holders` (none: not named).
    containers: Option<ContainerNames>,
    /// Sockets whose holders have their containers named.
    labelled: FastSet<u64>,
    /// The capture is behind the kernel: no looking in /proc.
    behind: bool,
    /// Lookups not made because the capture was behind (one per packet).
    pub(crate) skipped: u64,
    /// udstrace's process.
    own: u32,
}

impl Default for PeerResolver {
    fn default() -> Self {
        Self::system(Path::new("/"))
    }
}

impl PeerResolver {
    /// Holders from `/proc` and sock_diag, their containers named from the runtimes' state
    /// under `host_root`.
    #[must_use]
    pub(crate) fn system(host_root: &Path) -> Self {
        Self {
            containers: Some(ContainerNames::system(host_root)),
            ..Self::with_source(Box::new(System))
        }
    }

    #[must_use]
    pub(crate) fn with_source(source: Box<dyn Source + Send>) -> Self {
        Self {
            holders: FastMap::default(),
            confirmed: FastMap::default(),
            missed: FastMap::default(),
            scanned: None,
            interval: MIN_RESCAN,
            source,
            started: None,
            spent: Duration::ZERO,
            names: HashMap::new(),
            names_scanned: None,
            containers: None,
            labelled: FastSet::default(),
            behind: false,
            skipped: 0,
            own: std::process::id(),
        }
    }

    /// Names the holders' containers with `containers`.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_containers(mut self, containers: ContainerNames) -> Self {
        self.containers = Some(containers);
        self
    }

    /// While `behind` (the capture loop has fallen behind the kernel: records pile up in the
    /// ring buffer), holders are not looked for in /proc and known ones not confirmed: a
    /// message's receiver is then the one the kernel named, by the peer's last user or its
    /// credentials. A lookup costs tens of microseconds, ten times the rest of a record's
    /// work, and a stream of new connections, each closed before udstrace looks, would
    /// otherwise fill the ring buffer and lose messages for receivers /proc no longer knows.
    pub(crate) fn set_behind(&mut self, behind: bool) {
        self.behind = behind;
    }

    /// The processes holding socket `ino`, the peer of a socket of process `sender`, bound to
    /// (or connected to a listener bound to) `peer_name`, last seen sending in process
    /// `peer_sender`; empty when none does (or it is gone). An unknown socket, or one whose
    /// last sender is not among its known holders, is looked for first in the likely
    /// processes (those three, the sender's parent, children and siblings), then by a full
    /// scan. `now`: the message's time (the kernel's boot clock), which orders the lookups
    /// and confirmations (reading a clock for each message cost more than the rest of a
    /// known receiver's lookup).
    pub(crate) fn holders(
        &mut self,
        ino: u64,
        sender: u32,
        peer_name: &[u8],
        peer_sender: Option<u32>,
        now: Duration,
    ) -> &[Holder] {
        if ino == 0 {
            return &[];
        }
        let stale = match self.holders.get_mut(&ino) {
            None => true,
            Some(list) if peer_sender.is_some_and(|p| list.iter().all(|h| h.pid != p)) => true,
            Some(list) => {
                let since = self
                    .confirmed
                    .get(&ino)
                    .copied()
                    .or(self.scanned)
                    .map_or(Duration::MAX, |t| now.saturating_sub(t));
                if since < CONFIRM_AFTER || self.behind {
                    false
                } else {
                    let before = list.len();
                    let source = &self.source;
                    list.retain(|h| source.still_holds(h, ino));
                    self.confirmed.insert(ino, now);
                    list.len() != before
                }
            }
        };
        if stale && self.behind {
            self.skipped += 1;
        } else if stale && self.within_budget(now) {
            let began = Instant::now();
            let found = self.look_in_likely(ino, now, [Some(sender), peer_sender], peer_name);
            if !found
                && self
                    .scanned
                    .is_none_or(|t| now.saturating_sub(t) >= self.interval)
            {
                let start = Instant::now();
                self.holders = self.source.all().into_iter().collect();
                self.labelled = FastSet::default();
                self.interval = (start.elapsed() * 10).clamp(MIN_RESCAN, MAX_RESCAN);
                self.scanned = Some(now);
                self.confirmed = FastMap::default();
                self.missed = FastMap::default();
            }
            self.spent = self.spent.saturating_add(began.elapsed());
        }
        let Some(list) = self.holders.get_mut(&ino) else {
            return &[];
        };
        if let Some(containers) = &mut self.containers {
            // Once per entry: a process stays in its container.
            if self.labelled.len() > MAX_LABELLED {
                // A new set: `clear` would keep the old one's memory.
                self.labelled = FastSet::default();
            }
            if self.labelled.insert(ino) {
                for h in list.iter_mut() {
                    h.container = containers.label_of(h.pid).to_string();
                }
            }
        }
        list
    }

    /// Whether looking for holders may cost more time now: at most a tenth of the time since
    /// the capture started (plus a first allowance), so that a stream of new sockets (many
    /// short connections) cannot make udstrace spend its time in /proc and fall behind the
    /// kernel. Over budget, unknown peers stay unnamed.
    fn within_budget(&mut self, now: Duration) -> bool {
        let started = *self.started.get_or_insert(now);
        self.spent < BUDGET_START + now.saturating_sub(started) / 10
    }

    /// Looks for `ino` in the processes likely to hold it; true when found.
    fn look_in_likely(
        &mut self,
        ino: u64,
        now: Duration,
        senders: [Option<u32>; 2],
        peer_name: &[u8],
    ) -> bool {
        if self
            .missed
            .get(&ino)
            .is_some_and(|t| now.saturating_sub(*t) < CONFIRM_AFTER)
        {
            return false;
        }
        let mut pids: Vec<u32> = senders.into_iter().flatten().collect();
        if let Some(sender) = senders[0] {
            // A socket handed to (or inherited by) a parent, a child or a sibling; not the
            // siblings under init or a large supervisor, which are the whole machine.
            pids.extend(self.source.children(sender));
            if let Some(parent) = self.source.parent(sender) {
                pids.push(parent);
                if parent > 1 {
                    let siblings = self.source.children(parent);
                    if siblings.len() <= MAX_SIBLINGS {
                        pids.extend(siblings);
                    }
                }
            }
        }
        if !peer_name.is_empty() {
            let listener = self.bound(peer_name);
            if let Some(list) = self.holders.get(&listener) {
                pids.extend(list.iter().map(|h| h.pid));
            }
        }
        // udstrace itself: often a sibling of what it traces (both started by one shell), and
        // with tens of descriptors of its own (BPF maps and programs), it would be most of
        // each lookup's cost. A socket it holds is still found by a full scan.
        pids.retain(|&p| p != self.own);
        pids.sort_unstable();
        pids.dedup();
        let mut found: Vec<Holder> = Vec::new();
        for pid in pids {
            for (i, h) in self.source.process(pid) {
                if i == ino {
                    found.push(h);
                }
            }
        }
        if found.is_empty() {
            if self.missed.len() > 65_536 {
                self.missed = FastMap::default();
            }
            self.missed.insert(ino, now);
            return false;
        }
        self.holders.insert(ino, found);
        self.labelled.remove(&ino);
        self.confirmed.insert(ino, now);
        true
    }

    /// The inode of the socket bound to `name` (a `sun_path`, abstract names with their
    /// leading NUL), 0 when none is; rescanned on a miss at most every `MAX_RESCAN`/5.
    pub(crate) fn bound(&mut self, name: &[u8]) -> u64 {
        if !self.names.contains_key(name)
            && self
                .names_scanned
                .is_none_or(|t| t.elapsed() >= MAX_RESCAN / 5)
        {
            self.names = self.source.bound_names();
            self.names_scanned = Some(Instant::now());
        }
        self.names.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message's time.
    const T0: Duration = Duration::from_secs(1000);

    fn holder(pid: u32, comm: &str, fd: u32) -> Holder {
        Holder {
            pid,
            comm: comm.into(),
            fd,
            container: String::new(),
        }
    }

    fn table() -> HashMap<u64, Vec<Holder>> {
        HashMap::from([(7, vec![holder(1, "init", 3), holder(2, "gone", 4)])])
    }

    /// `Fixed`, except that process 2 has let go of everything.
    struct LetGo;

    impl Source for LetGo {
        fn all(&self) -> HashMap<u64, Vec<Holder>> {
            table()
        }
        fn process(&self, pid: u32) -> Vec<(u64, Holder)> {
            Fixed(table()).process(pid)
        }
        fn parent(&self, _: u32) -> Option<u32> {
            None
        }
        fn children(&self, _: u32) -> Vec<u32> {
            Vec::new()
        }
        fn still_holds(&self, h: &Holder, _: u64) -> bool {
            h.pid == 1
        }
        fn bound_names(&self) -> HashMap<Vec<u8>, u64> {
            HashMap::new()
        }
    }

    #[test]
    fn resolves_and_spaces_rescans() {
        let mut r = PeerResolver::with_source(Box::new(Fixed(table())));
        assert_eq!(r.holders(7, 99, b"", None, T0).len(), 2);
        assert!(r.holders(8, 99, b"", None, T0).is_empty());
        assert!(r.holders(0, 99, b"", None, T0).is_empty());
        let scanned = r.scanned;
        assert!(r.holders(9, 99, b"", None, T0).is_empty());
        assert_eq!(r.scanned, scanned, "no second scan within the interval");
        assert!(r.holders(9, 99, b"", None, T0 + MIN_RESCAN).is_empty());
        assert_ne!(r.scanned, scanned, "a miss rescans after the interval");
    }

    #[test]
    fn likely_processes_before_a_full_scan() {
        let mut r = PeerResolver::with_source(Box::new(Fixed(table())));
        // The sender holds it: found without any full scan.
        assert_eq!(r.holders(7, 2, b"", None, T0)[0].pid, 2);
        assert_eq!(r.scanned, None);
        // Its last sender is not among the holders: looked for again, in the sender too.
        let mut r = PeerResolver::with_source(Box::new(Fixed(table())));
        r.holders.insert(7, vec![holder(5, "old", 3)]);
        r.scanned = Some(T0);
        r.interval = Duration::from_mins(1);
        let pids: Vec<u32> = r
            .holders(7, 99, b"", Some(1), T0)
            .iter()
            .map(|h| h.pid)
            .collect();
        assert_eq!(pids, [1]);
    }

    #[test]
    fn no_lookups_while_behind() {
        let mut r = PeerResolver::with_source(Box::new(LetGo));
        r.set_behind(true);
        assert!(r.holders(7, 99, b"", None, T0).is_empty(), "not looked for");
        assert_eq!((r.scanned, r.skipped), (None, 1));
        r.set_behind(false);
        assert_eq!(r.holders(7, 99, b"", None, T0).len(), 2, "looked for again");
        // Known holders are not confirmed while behind, even when old enough to be.
        r.interval = Duration::from_mins(1);
        let later = T0 + 2 * CONFIRM_AFTER;
        r.set_behind(true);
        assert_eq!(r.holders(7, 99, b"", None, later).len(), 2);
        r.set_behind(false);
        assert_eq!(
            r.holders(7, 99, b"", None, later).len(),
            1,
            "process 2 let go"
        );
    }

    #[test]
    fn holders_that_let_go_are_dropped() {
        let mut r = PeerResolver::with_source(Box::new(LetGo));
        assert_eq!(
            r.holders(7, 99, b"", None, T0).len(),
            2,
            "fresh from the scan"
        );
        r.interval = Duration::from_mins(1);
        let later = T0 + CONFIRM_AFTER;
        let pids: Vec<u32> = r
            .holders(7, 99, b"", None, later)
            .iter()
            .map(|h| h.pid)
            .collect();
        assert_eq!(
            pids,
            [1],
            "confirmed one by one once older than CONFIRM_AFTER"
        );
    }
}
