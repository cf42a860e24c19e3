//! `-r FILE`: reads a udstrace capture back into the text view.

use std::{
    fs::File,
    io::{self, BufReader, Write},
    path::Path,
};

use pcap_file::pcapng::{
    blocks::{
        enhanced_packet::EnhancedPacketOption, interface_description::InterfaceDescriptionOption,
    },
    Block, PcapNgReader,
};

use super::{
    headers::{IPV6_LEN, TCP_LEN, UDP_LEN},
    text::{write_packet, PayloadStyle},
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

/// Prints every packet of `path` to standard output; returns how many there were.
pub(crate) fn read(path: &Path, style: PayloadStyle, count: Option<u64>) -> Result<u64, Error> {
    let bad = |reason: String| Error::Input {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut reader = PcapNgReader::new(BufReader::new(file))
        .map_err(|e| bad(format!("not a pcapng file: {e}")))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut line = String::new();
    let mut unit = 1u64;
    let mut n = 0u64;
    while let Some(block) = reader.next_block() {
        if count.is_some_and(|c| n >= c) {
            break;
        }
        match block.map_err(|e| bad(format!("packet {}: {e}", n + 1)))? {
            Block::InterfaceDescription(idb) => {
                unit = 1000; // pcapng's default resolution is microseconds
                for opt in &idb.options {
                    if let InterfaceDescriptionOption::IfTsResol(r) = opt {
                        unit = unit_ns(*r)
                            .ok_or_else(|| bad(format!("unsupported time resolution {r}")))?;
                    }
                }
            }
            Block::EnhancedPacket(epb) => {
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.as_ref()),
                    _ => None,
                });
                let meta: Meta = comment
                    .ok_or_else(|| {
                        bad(format!("packet {} has no udstrace metadata comment", n + 1))
                    })?
                    .parse()
                    .map_err(|e| bad(format!("packet {}: {e}", n + 1)))?;
                let data: &[u8] = &epb.data;
                let header_len = match data.get(6) {
                    Some(6) => IPV6_LEN + TCP_LEN,
                    Some(17) => IPV6_LEN + UDP_LEN,
                    _ => return Err(bad(format!("packet {} is not a udstrace packet", n + 1))),
                };
                let payload = data.get(header_len..).unwrap_or(&[]);
                let packet = Packet {
                    ts_ns: u64::try_from(epb.timestamp.as_nanos())
                        .unwrap_or(0)
                        .saturating_mul(unit),
                    meta,
                    orig_len: epb.original_len.saturating_sub(header_len as u32),
                    payload,
                    headers: &data[..header_len.min(data.len())],
                    drops: 0,
                };
                line.clear();
                write_packet(&mut line, &packet, style);
                if let Err(e) = out.write_all(line.as_bytes()) {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        return Ok(n);
                    }
                    return Err(Error::Output {
                        path: "standard output".into(),
                        source: e,
                    });
                }
                n += 1;
            }
            _ => {}
        }
    }
    out.flush().or_else(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(Error::Output {
                path: "standard output".into(),
                source: e,
            })
        }
    })?;
    Ok(n)
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
