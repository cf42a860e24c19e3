//! What to keep, besides the process filter the kernel applies: command names, socket names
//! and socket types, checked on each record before it becomes packets.

use udstrace_common::SockType;

use crate::{packet::Meta, proc::names::name_matches};

/// A record filter; the empty filter keeps everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Keep senders with one of these command names.
    pub(crate) comms: Vec<String>,
    /// Keep sockets whose name or peer's name matches one of these (path, `@name`, globs).
    pub(crate) paths: Vec<String>,
    /// Keep sockets of this type.
    pub(crate) sock_type: Option<SockType>,
}

impl Filter {
    #[must_use]
    pub(crate) fn matches(&self, m: &Meta<'_>) -> bool {
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
        if !self.paths.is_empty()
            && !self
                .paths
                .iter()
                .any(|p| name_matches(p, &m.path) || name_matches(p, &m.peer_path))
        {
            return false;
        }
        true
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
        filter.matches(&SendSegment::try_from(bytes.as_slice()).unwrap().meta)
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
        assert!(parse_type("raw").is_err());
    }
}
