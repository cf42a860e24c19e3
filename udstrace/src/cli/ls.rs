//! `udstrace ls`: every Unix socket of every network namespace with its peer, the processes
//! holding each end and their containers, like `ss -xp` joined with lsof; `--json` for
//! scripts.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    io,
    path::Path,
};

use udstrace_common::SockType;

use super::{args::parse_pids, stdout_error, Failure};
use crate::{
    capture::filter::parse_type,
    error::Error,
    packet::Holder,
    proc::{
        container_names::ContainerNames,
        names::{display, name_matches},
        sockets::{self, FileId, UnixSocket},
    },
};

/// What to list.
#[derive(Debug, Clone, Default)]
pub(crate) struct LsFilter {
    pub(crate) paths: Vec<PathFilter>,
    pub(crate) sock_type: Option<SockType>,
    pub(crate) pids: Vec<u32>,
    pub(crate) comms: Vec<String>,
}

/// What one `--path` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathFilter {
    /// A socket file of this host: the sockets bound to that very file, whatever name they
    /// were bound with in their own mount namespace (a container's `/sock/app.sock`).
    File(FileId),
    /// A name as sockets were bound with it: `@abstract`, a glob, or a path that is no file
    /// here (a name inside a container).
    Name(String),
}

impl PathFilter {
    /// A `--path` value; an error for an empty one, or a path to a file that is no socket.
    pub(crate) fn parse(p: String) -> Result<Self, String> {
        if p.is_empty() {
            return Err("--path is empty: give a socket's path, @name or a glob".into());
        }
        if p.starts_with('@') || p.contains(['*', '?']) || !Path::new(&p).exists() {
            return Ok(Self::Name(p));
        }
        FileId::of_socket_file(Path::new(&p)).map(Self::File)
    }

    fn matches(&self, socket: &UnixSocket) -> bool {
        match self {
            Self::File(id) => socket.file == Some(*id),
            Self::Name(p) => name_matches(p, &socket.name),
        }
    }
}

/// One row: a socket, its peer, the holders of both ends.
struct Row<'a> {
    socket: &'a UnixSocket,
    peer: Option<&'a UnixSocket>,
    holders: &'a [Holder],
    peer_holders: &'a [Holder],
}

impl<'a> Row<'a> {
    fn of(
        socket: &'a UnixSocket,
        by_ino: &HashMap<u64, &'a UnixSocket>,
        holders: &'a HashMap<u64, Vec<Holder>>,
    ) -> Self {
        Row {
            socket,
            peer: by_ino.get(&socket.peer).copied(),
            holders: holders.get(&socket.ino).map_or(&[], Vec::as_slice),
            peer_holders: holders.get(&socket.peer).map_or(&[], Vec::as_slice),
        }
    }

    fn peer_name(&self) -> &[u8] {
        self.peer.map_or(&[][..], |p| p.name.as_slice())
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_holders(out: &mut String, holders: &[Holder]) {
    out.push('[');
    for (i, h) in holders.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"pid\":{},\"comm\":", h.pid);
        json_string(out, &h.comm);
        let _ = write!(out, ",\"fd\":{},\"container\":", h.fd);
        json_string(out, &h.container);
        out.push('}');
    }
    out.push(']');
}

/// `comm[pid]:fd`, with `@container` when `with_container` and it runs in one.
fn text_holders(holders: &[Holder], with_container: bool) -> String {
    holders
        .iter()
        .map(|h| {
            let mut s = format!("{}[{}]:{}", h.comm, h.pid, h.fd);
            if with_container && !h.container.is_empty() {
                let _ = write!(s, "@{}", h.container);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The containers the holders run in, each once; `-` for none (the host).
fn text_containers(holders: &[Holder]) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for h in holders {
        if !h.container.is_empty() && !labels.contains(&h.container.as_str()) {
            labels.push(&h.container);
        }
    }
    if labels.is_empty() {
        "-".into()
    } else {
        labels.join(",")
    }
}

/// The listing: the text (a table, or JSON), and the network namespaces whose sockets are
/// missing from it, with why.
pub(crate) fn render(filter: &LsFilter, json: bool) -> io::Result<(String, Vec<(u64, io::Error)>)> {
    let all = sockets::list_all()?;
    let mut holders = sockets::holders();
    let by_ino: HashMap<u64, &UnixSocket> = all.sockets.iter().map(|s| (s.ino, s)).collect();
    let kept: Vec<&UnixSocket> = all
        .sockets
        .iter()
        .filter(|s| keep(filter, &Row::of(s, &by_ino, &holders)))
        .collect();
    // The containers of the processes shown, each process's read once.
    let shown: HashSet<u64> = kept.iter().flat_map(|s| [s.ino, s.peer]).collect();
    let mut names = ContainerNames::system(Path::new("/"));
    for (ino, list) in &mut holders {
        if shown.contains(ino) {
            for h in list {
                names.label_of(h.pid).clone_into(&mut h.container);
            }
        }
    }
    let rows: Vec<Row<'_>> = kept.iter().map(|s| Row::of(s, &by_ino, &holders)).collect();
    let text = if json { json_rows(&rows) } else { table(&rows) };
    Ok((text, all.missed))
}

fn json_rows(rows: &[Row<'_>]) -> String {
    let mut out = String::new();
    out.push('[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n  {\"type\":");
        json_string(
            &mut out,
            r.socket.sock_type.map_or("unknown", SockType::name),
        );
        out.push_str(",\"state\":");
        json_string(&mut out, r.socket.state_name());
        let _ = write!(
            out,
            ",\"ino\":{},\"peer_ino\":{},\"netns\":{},\"path\":",
            r.socket.ino, r.socket.peer, r.socket.netns
        );
        json_string(&mut out, &display(&r.socket.name));
        out.push_str(",\"peer_path\":");
        json_string(&mut out, &display(r.peer_name()));
        out.push_str(",\"processes\":");
        json_holders(&mut out, r.holders);
        out.push_str(",\"peer_processes\":");
        json_holders(&mut out, r.peer_holders);
        out.push('}');
    }
    out.push_str("\n]\n");
    out
}

/// The table: `ss -x`'s columns, the holders' containers, the holders of both ends.
fn table(rows: &[Row<'_>]) -> String {
    let containers: Vec<String> = rows.iter().map(|r| text_containers(r.holders)).collect();
    let width = containers
        .iter()
        .map(|c| c.chars().count())
        .chain([9])
        .max()
        .unwrap_or(9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<7} {:>9} {:>9}  {:<40} {:<width$}  PROCESSES (comm[pid]:fd) -> PEER'S",
        "TYPE", "STATE", "INODE", "PEER", "PATH", "CONTAINER"
    );
    for (r, container) in rows.iter().zip(&containers) {
        let name = display(&r.socket.name);
        let shown = if name.is_empty() && !r.peer_name().is_empty() {
            format!("-> {}", display(r.peer_name()))
        } else {
            name
        };
        let _ = writeln!(
            out,
            "{:<9} {:<7} {:>9} {:>9}  {:<40} {:<width$}  {} -> {}",
            r.socket.sock_type.map_or("unknown", SockType::name),
            r.socket.state_name(),
            r.socket.ino,
            r.socket.peer,
            shown,
            container,
            text_holders(r.holders, false),
            text_holders(r.peer_holders, true),
        );
    }
    out
}

fn keep(f: &LsFilter, r: &Row<'_>) -> bool {
    if f.sock_type.is_some_and(|t| Some(t) != r.socket.sock_type) {
        return false;
    }
    if !f.paths.is_empty()
        && !f
            .paths
            .iter()
            .any(|p| p.matches(r.socket) || r.peer.is_some_and(|peer| p.matches(peer)))
    {
        return false;
    }
    if !f.pids.is_empty() && !r.holders.iter().any(|h| f.pids.contains(&h.pid)) {
        return false;
    }
    if !f.comms.is_empty() && !r.holders.iter().any(|h| f.comms.contains(&h.comm)) {
        return false;
    }
    true
}

/// `udstrace ls`.
pub(super) fn run(
    json: bool,
    pids: &[String],
    comms: Vec<String>,
    paths: Vec<String>,
    sock_type: Option<&str>,
) -> Result<(), Failure> {
    use std::io::Write as _;
    let filter = LsFilter {
        paths: paths
            .into_iter()
            .map(PathFilter::parse)
            .collect::<Result<_, _>>()
            .map_err(Failure::Usage)?,
        sock_type: sock_type
            .map(parse_type)
            .transpose()
            .map_err(Failure::Usage)?,
        pids: parse_pids(pids).map_err(Failure::Usage)?,
        comms,
    };
    let (text, missed) = render(&filter, json).map_err(|e| {
        Failure::Error(Error::Input {
            path: "sock_diag".into(),
            reason: e.to_string(),
        })
    })?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(stdout_error)?;
    if let Some((_, why)) = missed.first() {
        eprintln!(
            "udstrace: the sockets of {} other network namespace{} are not listed (entering \
             one needs CAP_SYS_ADMIN): {why}",
            missed.len(),
            if missed.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\n");
        assert_eq!(s, "\"a\\\"b\\\\c\\u000a\"");
    }

    fn socket(ino: u64, peer: u64, state: u8, name: &[u8]) -> UnixSocket {
        UnixSocket {
            ino,
            sock_type: Some(SockType::Stream),
            state,
            name: name.to_vec(),
            peer,
            file: None,
            netns: 4_026_531_840,
        }
    }

    fn holder(pid: u32, fd: u32, container: &str) -> Holder {
        Holder {
            pid,
            comm: "python3".into(),
            fd,
            container: container.into(),
        }
    }

    /// A container's server and a host client: the column is as wide as the longest name,
    /// `-` is the host, and the peer's holders carry their container.
    #[test]
    fn table_names_containers() {
        let listener = socket(10, 0, 10, b"/sock/app.sock");
        let accepted = socket(11, 12, 1, b"/sock/app.sock");
        let client = socket(12, 11, 1, b"");
        let server = [holder(800, 3, "udstrace-web-1")];
        let accepted_holders = [holder(800, 4, "udstrace-web-1")];
        let client_holders = [holder(900, 5, "")];
        let rows = [
            Row {
                socket: &listener,
                peer: None,
                holders: &server,
                peer_holders: &[],
            },
            Row {
                socket: &accepted,
                peer: Some(&client),
                holders: &accepted_holders,
                peer_holders: &client_holders,
            },
            Row {
                socket: &client,
                peer: Some(&accepted),
                holders: &client_holders,
                peer_holders: &accepted_holders,
            },
        ];
        let expected = [
            "TYPE      STATE       INODE      PEER  PATH                                     \
             CONTAINER       PROCESSES (comm[pid]:fd) -> PEER'S",
            "stream    LISTEN         10         0  /sock/app.sock                           \
             udstrace-web-1  python3[800]:3 -> ",
            "stream    ESTAB          11        12  /sock/app.sock                           \
             udstrace-web-1  python3[800]:4 -> python3[900]:5",
            "stream    ESTAB          12        11  -> /sock/app.sock                        \
             -               python3[900]:5 -> python3[800]:4@udstrace-web-1",
        ];
        assert_eq!(table(&rows).lines().collect::<Vec<_>>(), expected);
        let json = json_rows(&rows[..1]);
        assert!(
            json.contains(
                "\"netns\":4026531840,\"path\":\"/sock/app.sock\",\"peer_path\":\"\",\
                 \"processes\":[{\"pid\":800,\"comm\":\"python3\",\"fd\":3,\
                 \"container\":\"udstrace-web-1\"}]"
            ),
            "{json}"
        );
    }
}
