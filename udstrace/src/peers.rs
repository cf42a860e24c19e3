//! Who holds the peer socket: the receiving processes of a message, from /proc/*/fd, cached
//! and rescanned on a miss (at most every `RESCAN_INTERVAL`, so that sockets that vanish before
//! a scan cannot make udstrace scan continuously).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::sockets::{self, Holder};

const RESCAN_INTERVAL: Duration = Duration::from_millis(200);

/// Socket inode -> the processes holding it.
pub struct PeerResolver {
    holders: HashMap<u64, Vec<Holder>>,
    scanned: Option<Instant>,
    scan: fn() -> HashMap<u64, Vec<Holder>>,
    /// Bound name -> socket inode.
    names: HashMap<Vec<u8>, u64>,
    names_scanned: Option<Instant>,
    scan_names: fn() -> HashMap<Vec<u8>, u64>,
}

impl Default for PeerResolver {
    fn default() -> Self {
        Self {
            holders: HashMap::new(),
            scanned: None,
            scan: sockets::holders,
            names: HashMap::new(),
            names_scanned: None,
            scan_names: sockets::bound_names,
        }
    }
}

impl PeerResolver {
    /// A resolver with another source of holders (tests).
    #[must_use]
    pub fn with_scan(scan: fn() -> HashMap<u64, Vec<Holder>>) -> Self {
        Self {
            scan,
            ..Self::default()
        }
    }

    /// The processes holding socket `ino`, rescanning if it is unknown and the last scan is
    /// old enough; empty when no process holds it (or it is gone).
    pub fn holders(&mut self, ino: u64) -> &[Holder] {
        if ino == 0 {
            return &[];
        }
        if !self.holders.contains_key(&ino)
            && self.scanned.is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL)
        {
            self.holders = (self.scan)();
            self.scanned = Some(Instant::now());
        }
        self.holders.get(&ino).map_or(&[], Vec::as_slice)
    }

    /// The inode of the socket bound to `name` (a `sun_path`, abstract names with their
    /// leading NUL), 0 when none is; rescanned like `holders`.
    pub fn bound(&mut self, name: &[u8]) -> u64 {
        if !self.names.contains_key(name)
            && self
                .names_scanned
                .is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL)
        {
            self.names = (self.scan_names)();
            self.names_scanned = Some(Instant::now());
        }
        self.names.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> HashMap<u64, Vec<Holder>> {
        HashMap::from([(
            7,
            vec![Holder {
                pid: 1,
                comm: "init".into(),
                fd: 3,
            }],
        )])
    }

    #[test]
    fn resolves_and_rate_limits_rescans() {
        let mut r = PeerResolver::with_scan(fake);
        assert_eq!(r.holders(7)[0].pid, 1);
        assert!(r.holders(8).is_empty());
        assert!(r.holders(0).is_empty());
        let scanned = r.scanned;
        assert!(r.holders(9).is_empty());
        assert_eq!(r.scanned, scanned, "no second scan within the interval");
    }
}
