//! `-r FILE` (`-r -`: standard input): reads a udstrace capture back into the text view;
//! several files (a rotated set) one after the other, `-c` counting over all of them.
//!
//! A file cut short says so, after the packets it held; a packet whose metadata comment cannot
//! be read is shown without it, and a line at the end counts such packets.

use std::{
    fs::File,
    io::{self, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use pcap_file::{
    pcapng::{
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::InterfaceDescriptionOption,
        },
        Block, PcapNgReader,
    },
    DataLink, PcapError,
};

use super::{
    headers::{IPV6_LEN, TCP_LEN, UDP_LEN},
    text::{write_packet, write_unlabelled, PayloadStyle},
};
use crate::{
    error::Error,
    packet::{Meta, Packet},
};

/// Nanoseconds per timestamp unit for an `if_tsresol` value.
fn unit_ns(tsresol: u8) -> Option<u64> {
    if tsresol & 0x80 != 0 {
        return None;
    }
    let digits = 9u32.checked_sub(u32::from(tsresol))?;
    Some(10u64.pow(digits))
}

/// What went wrong reading a block, in words (pcap-file says `Error reading bytes` for all of
/// them).
fn explain(e: &PcapError, packets: u64) -> String {
    match e {
        PcapError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            format!("file ends in the middle of a block after {packets} packets (cut short?)")
        }
        PcapError::IoError(io) => format!("after {packets} packets: {io}"),
        other => format!("after {packets} packets: {other}"),
    }
}

/// Prints every packet of `paths` (`-`: standard input), one file after the other, to standard
/// output; returns how many there were.
pub(crate) fn read(
    paths: &[PathBuf],
    style: PayloadStyle,
    count: Option<u64>,
) -> Result<u64, Error> {
    let mut out = Printer {
        out: BufWriter::new(io::stdout().lock()),
        each_packet: false,
    };
    let mut view = View::new(style);
    let mut result = Ok(());
    for path in paths {
        if count.is_some_and(|c| view.packets >= c) {
            break;
        }
        match read_one(path, &mut view, &mut out, count) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let flushed = out.finish();
    if view.unreadable != 0 {
        eprintln!(
            "udstrace: warning: {} of {} packets had no readable udstrace metadata and are shown \
             without it (the first, {})",
            view.unreadable, view.packets, view.first_unreadable
        );
    }
    result.and(flushed).map(|()| view.packets)
}

/// Reads a whole capture from `bytes` as `-r` would, its text thrown away: the packets read,
/// or the one-line error `-r` would print.
pub(crate) fn read_bytes(bytes: &[u8], style: PayloadStyle) -> Result<u64, Error> {
    let mut out = Printer {
        out: BufWriter::new(io::sink()),
        each_packet: false,
    };
    let mut view = View::new(style);
    read_input(
        Box::new(bytes),
        Path::new("input"),
        &mut view,
        &mut out,
        None,
    )?;
    out.finish()?;
    Ok(view.packets)
}

/// Prints the packets of one file (up to `count` in all); `Ok(false)` when standard output's
/// reader has gone.
fn read_one<W: Write>(
    path: &Path,
    view: &mut View,
    out: &mut Printer<W>,
    count: Option<u64>,
) -> Result<bool, Error> {
    let stdin = path == Path::new("-");
    let name = if stdin {
        PathBuf::from("standard input")
    } else {
        path.to_path_buf()
    };
    let bad = |reason: String| Error::Input {
        path: name.clone(),
        reason,
    };
    let input: Box<dyn Read> = if stdin {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(|e| bad(e.to_string()))?)
    };
    // A live pipe (`udstrace -w - | udstrace -r -`): each packet shown as it comes.
    out.each_packet = stdin;
    read_input(input, &name, view, out, count)
}

/// Prints the packets of `input`, named `name` in errors (up to `count` in all); `Ok(false)`
/// when standard output's reader has gone.
fn read_input<W: Write>(
    input: Box<dyn Read + '_>,
    name: &Path,
    view: &mut View,
    out: &mut Printer<W>,
    count: Option<u64>,
) -> Result<bool, Error> {
    let bad = |reason: String| Error::Input {
        path: name.to_path_buf(),
        reason,
    };
    let mut reader = PcapNgReader::new(input).map_err(|e| match e {
        PcapError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            bad("not a pcapng file: it is empty or ends within its first block".into())
        }
        e => bad(format!("not a pcapng file: {e}")),
    })?;
    // Packets before this file: its messages count its own.
    let before = view.packets;
    loop {
        if count.is_some_and(|c| view.packets >= c) {
            return Ok(true);
        }
        let block = match reader.next_block() {
            None => return Ok(true),
            Some(Ok(block)) => block,
            Some(Err(e)) => return Err(bad(explain(&e, view.packets - before))),
        };
        match block {
            Block::SectionHeader(_) => view.interfaces.clear(),
            Block::InterfaceDescription(idb) => {
                // pcapng's default resolution is microseconds.
                let mut unit = 1000;
                for opt in &idb.options {
                    if let InterfaceDescriptionOption::IfTsResol(r) = opt {
                        unit = unit_ns(*r)
                            .ok_or_else(|| bad(format!("unsupported time resolution {r}")))?;
                    }
                }
                view.interfaces.push((idb.linktype == DataLink::DBUS, unit));
            }
            Block::EnhancedPacket(epb) => {
                view.packet(&epb, before).map_err(bad)?;
                if !out.print(&view.line)? {
                    return Ok(false);
                }
            }
            _ => {}
        }
    }
}

/// The text view of the packets read so far.
struct View {
    style: PayloadStyle,
    /// The last packet's line(s).
    line: String,
    /// Each interface of the section: whether it is the D-Bus one, and its nanoseconds per
    /// timestamp unit.
    interfaces: Vec<(bool, u64)>,
    packets: u64,
    /// Packets whose metadata could not be read, and the first one's reason.
    unreadable: u64,
    first_unreadable: String,
}

impl View {
    fn new(style: PayloadStyle) -> Self {
        Self {
            style,
            line: String::new(),
            interfaces: Vec::new(),
            packets: 0,
            unreadable: 0,
            first_unreadable: String::new(),
        }
    }
}

impl View {
    /// Puts the text of one packet in `line`; a packet that is not udstrace's is an error.
    /// `before`: packets of the files before this one (messages number this file's).
    fn packet(&mut self, epb: &EnhancedPacketBlock<'_>, before: u64) -> Result<(), String> {
        let data: &[u8] = &epb.data;
        let n = self.packets + 1 - before;
        let (dbus, unit) = self
            .interfaces
            .get(epb.interface_id as usize)
            .copied()
            .ok_or_else(|| {
                format!(
                    "packet {n} names interface {}, which is not described",
                    epb.interface_id
                )
            })?;
        // A D-Bus message (`dbus_sink.rs`) has no header of its own.
        let header_len = match data.get(6) {
            _ if dbus => 0,
            Some(6) => IPV6_LEN + TCP_LEN,
            Some(17) => IPV6_LEN + UDP_LEN,
            _ => return Err(format!("packet {n} is not a udstrace packet")),
        };
        let ts_ns = u64::try_from(epb.timestamp.as_nanos())
            .unwrap_or(0)
            .saturating_mul(unit);
        let orig_len = epb.original_len.saturating_sub(header_len as u32);
        let payload = data.get(header_len..).unwrap_or(&[]);
        let comment = epb.options.iter().find_map(|o| match o {
            EnhancedPacketOption::Comment(c) => Some(c.as_ref()),
            _ => None,
        });
        let meta = comment
            .ok_or_else(|| "no udstrace metadata comment".to_string())
            .and_then(|c| c.parse::<Meta>().map_err(|e| e.to_string()));
        self.line.clear();
        match meta {
            Ok(meta) => {
                let packet = Packet {
                    ts_ns,
                    meta,
                    orig_len,
                    payload,
                    headers: &data[..header_len.min(data.len())],
                    drops: 0,
                };
                write_packet(&mut self.line, &packet, self.style);
            }
            Err(reason) => {
                if self.unreadable == 0 {
                    self.first_unreadable = format!("packet {n}: {reason}");
                }
                self.unreadable += 1;
                write_unlabelled(&mut self.line, ts_ns, orig_len, payload, self.style);
            }
        }
        self.packets += 1;
        Ok(())
    }
}

/// Standard output for `-r`, where a reader that goes away (`| head`) ends the reading quietly.
struct Printer<W: Write> {
    out: BufWriter<W>,
    each_packet: bool,
}

impl<W: Write> Printer<W> {
    /// Prints `text`; `Ok(false)` when the reader has gone.
    fn print(&mut self, text: &str) -> Result<bool, Error> {
        let mut result = self.out.write_all(text.as_bytes());
        if self.each_packet {
            result = result.and_then(|()| self.out.flush());
        }
        Self::judge(result)
    }

    fn finish(&mut self) -> Result<(), Error> {
        Self::judge(self.out.flush()).map(drop)
    }

    fn judge(result: io::Result<()>) -> Result<bool, Error> {
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(source) => Err(Error::Output {
                path: "standard output".into(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unit_ns;

    #[test]
    fn time_units() {
        assert_eq!(unit_ns(9), Some(1));
        assert_eq!(unit_ns(6), Some(1000));
        assert_eq!(unit_ns(0), Some(1_000_000_000));
        assert_eq!(unit_ns(10), None);
        assert_eq!(unit_ns(0x86), None);
    }
}
