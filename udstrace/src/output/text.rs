//! The readable view: one line per packet, like tcpdump's, ending in a protocol summary where
//! one applies (`summary.rs`), optionally with the payload as hex and ASCII (`-X`) or ASCII
//! (`-A`).

use std::fmt::Write as _;

use crate::{
    packet::{escape_into, Cut, Packet},
    sys,
};

/// How much of the payload to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PayloadStyle {
    #[default]
    None,
    Ascii,
    HexAscii,
}

/// Local time of day of `ts_ns` as `HH:MM:SS.micros`.
fn write_time(out: &mut String, ts_ns: u64) {
    let secs = i64::try_from(ts_ns / 1_000_000_000).unwrap_or(0);
    let micros = (ts_ns % 1_000_000_000) / 1000;
    let (hours, minutes, seconds) = sys::local_time_of_day(secs);
    let _ = write!(out, "{hours:02}:{minutes:02}:{seconds:02}.{micros:06}");
}

fn write_end(out: &mut String, ino: u64, path: &[u8]) {
    if ino == 0 {
        out.push('?');
    } else {
        let _ = write!(out, "{ino}");
    }
    if !path.is_empty() {
        out.push_str(" (");
        escape_into(out, path, true);
        out.push(')');
    }
}

/// Appends the line(s) for one packet to `out`, with a trailing newline.
pub(crate) fn write_packet(out: &mut String, p: &Packet<'_>, style: PayloadStyle) {
    let v = &p.meta;
    write_time(out, p.ts_ns);
    out.push(' ');
    if let Some(line) = super::dbus::summary(p) {
        out.push_str(&line);
        v.write_text_fields(out);
        out.push('\n');
        write_payload(out, p.payload, style);
        return;
    }
    escape_into(out, &v.comm, false);
    let _ = write!(out, "[{}", v.pid);
    if v.tid != v.pid {
        let _ = write!(out, "/{}", v.tid);
    }
    out.push(']');
    if let Some(container) = &v.container {
        out.push('@');
        escape_into(out, container, false);
    }
    let _ = write!(out, " {} ", v.sock_type.name());
    write_end(out, v.ino, &v.path);
    // A receive: the socket read what its peer sent.
    out.push_str(if v.is_recv() { " < " } else { " > " });
    write_end(out, v.peer_ino, &v.peer_path);
    for (i, h) in v.peers.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        escape_into(out, h.comm.as_bytes(), false);
        let _ = write!(out, "[{}]", h.pid);
        if !h.container.is_empty() {
            out.push('@');
            escape_into(out, h.container.as_bytes(), false);
        }
    }
    let _ = write!(out, ", length {}", p.orig_len);
    if let Some(seg_offset) = v.seg_offset {
        let _ = write!(out, " (part at {seg_offset} of {})", v.msg_len);
    }
    match v.payload {
        Some(Cut::Missing) => out.push_str(" [payload not visible to the kernel program]"),
        Some(Cut::Fault) => out.push_str(" [payload unreadable]"),
        Some(Cut::IovLimit) => out.push_str(" [payload cut: too many iovecs]"),
        Some(Cut::Snaplen) => {
            let _ = write!(out, " [captured {}]", p.payload.len());
        }
        None => {}
    }
    v.write_text_fields(out);
    // Only a message's first segment starts a protocol message.
    if v.seg_offset.unwrap_or(0) == 0 {
        super::summary::write_summary(out, p.headers, p.payload);
    }
    out.push('\n');
    write_payload(out, p.payload, style);
}

/// Appends the line for a packet read back without its metadata (`-r` of a packet whose
/// comment is missing or unreadable): its time, its length and its payload.
pub(crate) fn write_unlabelled(
    out: &mut String,
    ts_ns: u64,
    orig_len: u32,
    payload: &[u8],
    style: PayloadStyle,
) {
    write_time(out, ts_ns);
    let _ = writeln!(out, " [no udstrace metadata], length {orig_len}");
    write_payload(out, payload, style);
}

/// Appends the payload as `style` says.
fn write_payload(out: &mut String, payload: &[u8], style: PayloadStyle) {
    match style {
        PayloadStyle::None => {}
        PayloadStyle::Ascii => {
            for &b in payload {
                out.push(if b.is_ascii_graphic() || b == b' ' || b == b'\n' {
                    char::from(b)
                } else {
                    '.'
                });
            }
            if !payload.is_empty() && !payload.ends_with(b"\n") {
                out.push('\n');
            }
        }
        PayloadStyle::HexAscii => {
            for (i, line) in payload.chunks(16).enumerate() {
                let _ = write!(out, "\t0x{:04x}:  ", i * 16);
                for j in 0..16 {
                    match line.get(j) {
                        Some(b) => {
                            let _ = write!(out, "{b:02x}");
                        }
                        None => out.push_str("  "),
                    }
                    if j % 2 == 1 {
                        out.push(' ');
                    }
                }
                out.push(' ');
                for &b in line {
                    out.push(if b.is_ascii_graphic() || b == b' ' {
                        char::from(b)
                    } else {
                        '.'
                    });
                }
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use udstrace_common::SockType;

    use super::*;
    use crate::packet::{Bytes, Holder, Meta, Peers, Syscall};

    fn view(payload: &[u8]) -> Packet<'_> {
        Packet {
            ts_ns: 0,
            meta: Meta {
                pid: 10,
                tid: 11,
                comm: Bytes(Cow::Borrowed(b"curl")),
                sock_type: SockType::Stream,
                ino: 100,
                peer_ino: 101,
                peer_path: Bytes(Cow::Borrowed(b"/run/docker.sock")),
                syscall: Syscall(1),
                msg_len: payload.len() as u64,
                ..Meta::default()
            },
            orig_len: payload.len() as u32,
            payload,
            headers: &[],
            drops: 0,
        }
    }

    #[test]
    fn line_shows_sender_and_peer() {
        let mut s = String::new();
        write_packet(&mut s, &view(b"GET / HTTP/1.1\r\n"), PayloadStyle::None);
        let line = s.split_once(' ').unwrap().1;
        assert_eq!(
            line,
            "curl[10/11] stream 100 > 101 (/run/docker.sock), length 16\n"
        );
    }

    /// Processes in containers: `comm[pid]@container`, at both ends.
    #[test]
    fn containers_follow_the_processes() {
        let peers = [Holder {
            pid: 12,
            comm: "dockerd".into(),
            fd: 3,
            container: "web-1".into(),
        }];
        let mut p = view(b"x");
        p.meta.container = Some(Bytes(Cow::Borrowed(b"api")));
        p.meta.peers = Peers(Cow::Borrowed(&peers));
        let mut s = String::new();
        write_packet(&mut s, &p, PayloadStyle::None);
        let line = s.split_once(' ').unwrap().1;
        assert_eq!(
            line,
            "curl[10/11]@api stream 100 > 101 (/run/docker.sock) dockerd[12]@web-1, length 1\n"
        );
    }

    #[test]
    fn hex_dump() {
        let mut s = String::new();
        write_packet(&mut s, &view(b"0123456789abcdefXY"), PayloadStyle::HexAscii);
        let lines: Vec<_> = s.lines().skip(1).collect();
        assert_eq!(
            lines[0],
            "\t0x0000:  3031 3233 3435 3637 3839 6162 6364 6566  0123456789abcdef"
        );
        assert_eq!(
            lines[1],
            "\t0x0010:  5859                                     XY"
        );
    }

    #[test]
    fn ascii_dump_and_cut_note() {
        let mut s = String::new();
        let mut v = view(b"hi\x01");
        v.orig_len = 10;
        v.meta.payload = Some(Cut::Snaplen);
        write_packet(&mut s, &v, PayloadStyle::Ascii);
        assert!(s.contains("length 10 [captured 3]\n"), "{s}");
        assert!(s.ends_with("hi.\n"));
    }
}
