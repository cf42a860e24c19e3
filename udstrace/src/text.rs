//! The readable view: one line per packet, like tcpdump's, optionally with the payload as
//! hex and ASCII (`-X`) or ASCII (`-A`).

use std::fmt::Write as _;

use crate::meta::{escape_into, Cut, PacketView};

/// How much of the payload to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadStyle {
    #[default]
    None,
    Ascii,
    HexAscii,
}

/// Local time of day of `ts_ns` as `HH:MM:SS.micros`.
fn write_time(out: &mut String, ts_ns: u64) {
    let secs = libc::time_t::try_from(ts_ns / 1_000_000_000).unwrap_or(0);
    let micros = (ts_ns % 1_000_000_000) / 1000;
    // SAFETY: localtime_r fills the zeroed tm it is given.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&raw const secs, &raw mut tm) };
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{micros:06}",
        tm.tm_hour, tm.tm_min, tm.tm_sec
    );
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
pub fn write_packet(out: &mut String, v: &PacketView<'_>, style: PayloadStyle) {
    write_time(out, v.ts_ns);
    out.push(' ');
    escape_into(out, v.comm, false);
    let _ = write!(out, "[{}", v.pid);
    if v.tid != v.pid {
        let _ = write!(out, "/{}", v.tid);
    }
    let _ = write!(out, "] {} ", v.sock_type.name());
    write_end(out, v.ino, v.path);
    // A receive: the socket read what its peer sent.
    out.push_str(if v.recv { " < " } else { " > " });
    write_end(out, v.peer_ino, v.peer_path);
    for (i, h) in v.peers.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        escape_into(out, h.comm.as_bytes(), false);
        let _ = write!(out, "[{}]", h.pid);
    }
    let _ = write!(out, ", length {}", v.orig_len);
    if v.msg_len > u64::from(v.orig_len) {
        let _ = write!(out, " (part at {} of {})", v.seg_offset, v.msg_len);
    }
    match v.cut {
        Some(Cut::Missing) => out.push_str(" [payload not visible to the kernel program]"),
        Some(Cut::Fault) => out.push_str(" [payload unreadable]"),
        Some(Cut::IovLimit) => out.push_str(" [payload cut: too many iovecs]"),
        Some(Cut::Snaplen) => {
            let _ = write!(out, " [captured {}]", v.payload.len());
        }
        None => {}
    }
    out.push_str(v.ancillary);
    out.push('\n');
    match style {
        PayloadStyle::None => {}
        PayloadStyle::Ascii => {
            for &b in v.payload {
                out.push(if b.is_ascii_graphic() || b == b' ' || b == b'\n' {
                    char::from(b)
                } else {
                    '.'
                });
            }
            if !v.payload.is_empty() && !v.payload.ends_with(b"\n") {
                out.push('\n');
            }
        }
        PayloadStyle::HexAscii => {
            for (i, line) in v.payload.chunks(16).enumerate() {
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
    use udstrace_common::SockType;

    use super::*;

    fn view(payload: &[u8]) -> PacketView<'_> {
        PacketView {
            ts_ns: 0,
            pid: 10,
            tid: 11,
            uid: 0,
            gid: 0,
            comm: b"curl",
            peers: &[],
            recv: false,
            sock_type: SockType::Stream,
            ino: 100,
            peer_ino: 101,
            path: b"",
            peer_path: b"/run/docker.sock",
            syscall: 1,
            msg_len: payload.len() as u64,
            seg_offset: 0,
            orig_len: payload.len() as u32,
            payload,
            cut: None,
            ancillary: "",
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
        v.cut = Some(Cut::Snaplen);
        write_packet(&mut s, &v, PayloadStyle::Ascii);
        assert!(s.contains("length 10 [captured 3]\n"), "{s}");
        assert!(s.ends_with("hi.\n"));
    }
}
