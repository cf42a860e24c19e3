//! `udstrace ls`: every Unix socket with its peer and the processes holding each end, like
//! `ss -xp` joined with lsof; `--json` for scripts.

use std::{collections::HashMap, fmt::Write as _};

use udstrace_common::SockType;

use super::{args::parse_pids, capture::expand_paths, stdout_error, Failure};
use crate::{
    capture::filter::parse_type,
    error::Error,
    packet::Holder,
    proc::{
        names::{display, name_matches},
        sockets::{self, UnixSocket},
    },
};

/// What to list.
#[derive(Debug, Clone, Default)]
pub(crate) struct LsFilter {
    pub(crate) paths: Vec<String>,
    pub(crate) sock_type: Option<SockType>,
    pub(crate) pids: Vec<u32>,
    pub(crate) comms: Vec<String>,
}

/// One row: a socket, its peer's name, the holders of both ends.
struct Row<'a> {
    socket: &'a UnixSocket,
    peer_name: &'a [u8],
    holders: &'a [Holder],
    peer_holders: &'a [Holder],
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
        let _ = write!(out, ",\"fd\":{}}}", h.fd);
    }
    out.push(']');
}

fn text_holders(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(|h| format!("{}[{}]:{}", h.comm, h.pid, h.fd))
        .collect::<Vec<_>>()
        .join(",")
}

/// The listing as text (a table) or JSON.
pub(crate) fn render(filter: &LsFilter, json: bool) -> std::io::Result<String> {
    let all = sockets::list()?;
    let holders = sockets::holders();
    let by_ino: HashMap<u64, &UnixSocket> = all.iter().map(|s| (s.ino, s)).collect();
    let none: Vec<Holder> = Vec::new();
    let rows: Vec<Row<'_>> = all
        .iter()
        .map(|s| Row {
            socket: s,
            peer_name: by_ino.get(&s.peer).map_or(&[][..], |p| p.name.as_slice()),
            holders: holders.get(&s.ino).unwrap_or(&none),
            peer_holders: holders.get(&s.peer).unwrap_or(&none),
        })
        .filter(|r| keep(filter, r))
        .collect();
    let mut out = String::new();
    if json {
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
                ",\"ino\":{},\"peer_ino\":{},\"path\":",
                r.socket.ino, r.socket.peer
            );
            json_string(&mut out, &display(&r.socket.name));
            out.push_str(",\"peer_path\":");
            json_string(&mut out, &display(r.peer_name));
            out.push_str(",\"processes\":");
            json_holders(&mut out, r.holders);
            out.push_str(",\"peer_processes\":");
            json_holders(&mut out, r.peer_holders);
            out.push('}');
        }
        out.push_str("\n]\n");
    } else {
        let _ = writeln!(
            out,
            "{:<9} {:<7} {:>9} {:>9}  {:<40} PROCESSES (comm[pid]:fd) -> PEER'S",
            "TYPE", "STATE", "INODE", "PEER", "PATH"
        );
        for r in &rows {
            let name = display(&r.socket.name);
            let shown = if name.is_empty() && !r.peer_name.is_empty() {
                format!("-> {}", display(r.peer_name))
            } else {
                name
            };
            let _ = writeln!(
                out,
                "{:<9} {:<7} {:>9} {:>9}  {:<40} {} -> {}",
                r.socket.sock_type.map_or("unknown", SockType::name),
                r.socket.state_name(),
                r.socket.ino,
                r.socket.peer,
                shown,
                text_holders(r.holders),
                text_holders(r.peer_holders),
            );
        }
    }
    Ok(out)
}

fn keep(f: &LsFilter, r: &Row<'_>) -> bool {
    if f.sock_type.is_some_and(|t| Some(t) != r.socket.sock_type) {
        return false;
    }
    if !f.paths.is_empty()
        && !f
            .paths
            .iter()
            .any(|p| name_matches(p, &r.socket.name) || name_matches(p, r.peer_name))
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
        paths: expand_paths(paths)?,
        sock_type: sock_type
            .map(parse_type)
            .transpose()
            .map_err(Failure::Usage)?,
        pids: parse_pids(pids).map_err(Failure::Usage)?,
        comms,
    };
    let text = render(&filter, json).map_err(|e| {
        Failure::Error(Error::Input {
            path: "sock_diag".into(),
            reason: e.to_string(),
        })
    })?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(stdout_error)
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
}
