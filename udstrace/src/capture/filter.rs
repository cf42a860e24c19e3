//! What to keep, besides what the kernel programs filtered out already: command names, socket
//! names and socket types, checked on each record before it becomes packets.
//!
//! `--container` and `--pod` are not checked here: every kernel udstrace runs on has
//! `bpf_get_current_cgroup_id` (4.18+), so the kernel programs apply them to every record.

use udstrace_common::SockType;

use crate::{packet::Meta, proc::names::name_matches};

/// A record filter; the empty filter keeps everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Keep senders with one of these command names.
    pub(crate) comms: Vec<String>,
    /// Keep sockets whose name or peer's name matches one of these (path, `@name`, globs).
    pub(crate) paths: Vec<String>,
    /// The kernel applied `--path` (by bound file and name) to every record whose socket has
    /// a peer: only records without one (an unconnected datagram socket's, whose
    /// destination is a name) are matched here.
    pub(crate) kernel_paths: bool,
    /// Keep sockets of this type.
    pub(crate) sock_type: Option<SockType>,
}

impl Filter {
    /// Whether to keep a record with fields `m`, whose socket has a peer (`has_peer`) or not.
    #[must_use]
    pub(crate) fn matches(&self, m: &Meta<'_>, has_peer: bool) -> bool {
        if self.sock_type.is_some_and(|t| t != m.sock_type) {
            return false;
        }
        // The kernel keeps 15 bytes of a command name.
        if !self.comms.is_empty()
            && !self
                .comms
                .iter()
                .any(|c| c.as_bytes()[..c.len().min(15)] == *m.comm)
        {
            return false;
        }
        // A record the kernel matched by its sockets' files and names needs no second look.
        let kernel_matched = self.kernel_paths && has_peer;
        if !kernel_matched
            && !self.paths.is_empty()
            && !self
                .paths
                .iter()
                .any(|p| name_matches(p, &m.path) || name_matches(p, &m.peer_path))
        {
            return false;
        }
        true
    }

    /// Adds name patterns to `--path` (the names a socket file that appeared was bound with).
    pub(crate) fn add_paths(&mut self, names: impl IntoIterator<Item = String>) {
        for name in names {
            if !self.paths.contains(&name) {
                self.paths.push(name);
            }
        }
    }
}

/// Parses `stream`, `dgram` or `seqpacket`.
pub(crate) fn parse_type(s: &str) -> Result<SockType, String> {
    [SockType::Stream, SockType::Dgram, SockType::SeqPacket]
        .into_iter()
        .find(|t| t.name() == s)
        .ok_or_else(|| format!("unknown socket type `{s}` (expected stream, dgram or seqpacket)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracer::record::{testing::RawRecord, SendSegment};

    fn check(filter: &Filter, raw: &RawRecord) -> bool {
        let bytes = raw.encode();
        let seg = SendSegment::try_from(bytes.as_slice()).unwrap();
        filter.matches(&seg.meta, seg.peer_id != 0)
    }

    #[test]
    fn filters() {
        let raw = RawRecord::default(); // comm "client", peer_path /run/test.sock, stream
        assert!(check(&Filter::default(), &raw));
        let f = Filter {
            comms: vec!["client".into()],
            ..Filter::default()
        };
        assert!(check(&f, &raw));
        let f = Filter {
            comms: vec!["other".into()],
            ..Filter::default()
        };
        assert!(!check(&f, &raw));
        let f = Filter {
            paths: vec!["/run/*.sock".into()],
            ..Filter::default()
        };
        assert!(check(&f, &raw), "matches the peer's name");
        let f = Filter {
            paths: vec!["@abs".into()],
            ..Filter::default()
        };
        assert!(!check(&f, &raw));
        assert!(check(
            &f,
            &RawRecord {
                path: b"\0abs",
                ..RawRecord::default()
            }
        ));
        let f = Filter {
            sock_type: Some(SockType::Dgram),
            ..Filter::default()
        };
        assert!(!check(&f, &raw));
        assert_eq!(parse_type("seqpacket"), Ok(SockType::SeqPacket));
    }

    /// With `--path` applied in the kernel, a record whose socket has a peer was matched
    /// there (by the bound file, whatever name it was bound with): kept. One without a peer
    /// is matched by name here, its destination's among them.
    #[test]
    fn paths_the_kernel_matched() {
        let inner = RawRecord {
            path: b"/sock/app.sock",
            peer_path: b"",
            ..RawRecord::default()
        };
        let mut f = Filter {
            paths: vec!["/srv/x/app.sock".into()],
            ..Filter::default()
        };
        let connected = RawRecord {
            peer_id: Some(7),
            ..inner.clone()
        };
        assert!(!check(&f, &connected), "by name only");
        f.kernel_paths = true;
        assert!(check(&f, &connected), "matched by the kernel");
        let unconnected = RawRecord {
            peer_id: Some(0),
            ..inner.clone()
        };
        assert!(!check(&f, &unconnected));
        let to_it = RawRecord {
            peer_id: Some(0),
            path: b"",
            peer_path: b"/srv/x/app.sock",
            ..inner
        };
        assert!(check(&f, &to_it), "sent to the path");
        f.add_paths(["/sock/app.sock".to_string(), "/srv/x/app.sock".to_string()]);
        assert_eq!(f.paths, ["/srv/x/app.sock", "/sock/app.sock"]);
        assert!(check(&f, &unconnected), "a name the file was bound with");
        assert!(parse_type("raw").is_err());
    }
}
