//! A streaming pcapng writer (section header, one interface, enhanced packets, interface
//! statistics).
//!
//! Not pcap-file's writer: it cannot write the pid/tid packet option or `if_tsresol` (its
//! nanosecond timestamps come out 1000x off), and it builds an options `Vec` per packet. This
//! one appends whole blocks to a reused buffer and hands the buffer to the output in one write,
//! so the output only ever holds whole blocks: if a write fails part-way (disk full), the file
//! is cut back to the last whole block it held.

use std::io::{self, Write};

use super::dbus::{BUFFER_CAP, LINKTYPE_DBUS};
use crate::packet::Packet;

/// `LINKTYPE_RAW`: packets begin with an IPv4 or IPv6 header.
pub(crate) const LINKTYPE_RAW: u16 = 101;

const BLOCK_SHB: u32 = 0x0A0D_0D0A;
const BLOCK_IDB: u32 = 1;
const BLOCK_ISB: u32 = 5;
const BLOCK_EPB: u32 = 6;
const BLOCK_NRB: u32 = 4;
const NRB_RECORD_END: u16 = 0;
const NRB_RECORD_IPV6: u16 = 2;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_HARDWARE: u16 = 2;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
const EPB_DROPCOUNT: u16 = 4;
const EPB_PID_TID: u16 = 8;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;

/// `epb_flags` direction bits.
pub(crate) const DIRECTION_INBOUND: u32 = 1;
pub(crate) const DIRECTION_OUTBOUND: u32 = 2;

/// Buffered bytes that trigger a write.
const FLUSH_AT: usize = 1 << 20;

/// What the section and interface blocks say about the capture.
#[derive(Debug, Clone)]
pub(crate) struct CaptureInfo {
    pub(crate) section_comment: String,
    pub(crate) hardware: String,
    pub(crate) os: String,
    pub(crate) application: String,
    pub(crate) if_name: String,
    pub(crate) if_description: String,
    pub(crate) snaplen: u32,
}

/// Interface statistics written at the end of a capture.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) received: u64,
    pub(crate) dropped: u64,
}

/// Where the writer's output goes: a file, which can be cut back to a block boundary, a
/// stream, which cannot, or the output thread's hand-off (`writer.rs`).
pub(crate) trait Output {
    /// Writes `blocks`, whole blocks holding `packets` packets. Called with nothing to write,
    /// it reports an error the output has had since.
    fn write_blocks(&mut self, blocks: &[u8], packets: u64) -> io::Result<()>;
    /// As `write_blocks`, with the buffer itself: an output may take it over instead of
    /// copying it. `blocks` is left empty, either way.
    fn take_blocks(&mut self, blocks: &mut Vec<u8>, packets: u64) -> io::Result<()> {
        let written = self.write_blocks(blocks, packets);
        blocks.clear();
        written
    }
    /// Cuts the output back to `len` bytes, if it can.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Whether the output is behind and the capture should wait for it.
    fn blocked(&self) -> bool {
        false
    }
}

impl Output for std::fs::File {
    fn write_blocks(&mut self, blocks: &[u8], _packets: u64) -> io::Result<()> {
        self.write_all(blocks)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

impl Output for Vec<u8> {
    fn write_blocks(&mut self, blocks: &[u8], _packets: u64) -> io::Result<()> {
        self.extend_from_slice(blocks);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        Vec::truncate(self, len as usize);
        Ok(())
    }
}

/// The writer. Blocks are little-endian, nanosecond timestamps.
pub(crate) struct PcapngWriter<W: Output> {
    out: W,
    buf: Vec<u8>,
    /// Packets in `buf`.
    buffered_packets: u64,
    /// Bytes of whole blocks the output holds.
    written: u64,
    /// Whether this section has its D-Bus interface yet (written before its first packet).
    dbus_interface: bool,
}

impl<W: Output> PcapngWriter<W> {
    /// Starts a section with one interface; nothing is written until the first flush.
    pub(crate) fn new(out: W, info: &CaptureInfo) -> Self {
        let mut w = Self {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 128 * 1024),
            buffered_packets: 0,
            written: 0,
            dbus_interface: false,
        };
        w.section_header(info);
        w.interface(info);
        w
    }

    fn section_header(&mut self, info: &CaptureInfo) {
        let start = self.begin(BLOCK_SHB);
        self.put_u32(BYTE_ORDER_MAGIC);
        self.put_u16(1);
        self.put_u16(0);
        self.buf.extend_from_slice(&(-1i64).to_le_bytes());
        self.option(OPT_COMMENT, info.section_comment.as_bytes());
        self.option(SHB_HARDWARE, info.hardware.as_bytes());
        self.option(SHB_OS, info.os.as_bytes());
        self.option(SHB_USERAPPL, info.application.as_bytes());
        self.end_options();
        self.finish(start);
    }

    fn interface(&mut self, info: &CaptureInfo) {
        let start = self.begin(BLOCK_IDB);
        self.put_u16(LINKTYPE_RAW);
        self.put_u16(0);
        self.put_u32(info.snaplen);
        self.option(IF_NAME, info.if_name.as_bytes());
        self.option(IF_DESCRIPTION, info.if_description.as_bytes());
        self.option(IF_TSRESOL, &[9]);
        self.end_options();
        self.finish(start);
    }

    /// The second interface, of whole D-Bus messages (`dbus_sink.rs`), written before the
    /// section's first D-Bus message.
    fn dbus_interface(&mut self) {
        let start = self.begin(BLOCK_IDB);
        self.put_u16(LINKTYPE_DBUS);
        self.put_u16(0);
        self.put_u32(BUFFER_CAP as u32);
        self.option(IF_NAME, b"udstrace-dbus");
        self.option(
            IF_DESCRIPTION,
            b"D-Bus messages reassembled from Unix socket streams (their bytes are also in \
              the packets of interface 0)",
        );
        self.option(IF_TSRESOL, &[9]);
        self.end_options();
        self.finish(start);
        self.dbus_interface = true;
    }

    /// Appends a packet (its headers, then its payload) with `comment`, its direction and
    /// its sender's pid and tid as options. A D-Bus message (`dbus=`) goes on the D-Bus
    /// interface.
    pub(crate) fn packet(&mut self, p: &Packet<'_>, comment: &str) -> io::Result<()> {
        let dbus = !p.meta.dbus.0.is_empty();
        if dbus && !self.dbus_interface {
            self.dbus_interface();
        }
        let parts = [p.headers, p.payload];
        let caplen: usize = parts.iter().map(|x| x.len()).sum();
        let orig_len = p.headers.len() as u32 + p.orig_len;
        let direction = if p.meta.is_recv() {
            DIRECTION_INBOUND
        } else {
            DIRECTION_OUTBOUND
        };
        let start = self.begin(BLOCK_EPB);
        self.put_u32(u32::from(dbus));
        self.put_u32((p.ts_ns >> 32) as u32);
        self.put_u32(p.ts_ns as u32);
        self.put_u32(caplen as u32);
        self.put_u32(orig_len);
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.pad();
        self.option(OPT_COMMENT, comment.as_bytes());
        self.option(EPB_FLAGS, &direction.to_le_bytes());
        if p.drops != 0 {
            self.option(EPB_DROPCOUNT, &p.drops.to_le_bytes());
        }
        let mut pid_tid = [0u8; 8];
        pid_tid[..4].copy_from_slice(&p.meta.pid.to_le_bytes());
        pid_tid[4..].copy_from_slice(&p.meta.tid.to_le_bytes());
        self.option(EPB_PID_TID, &pid_tid);
        self.end_options();
        self.finish(start);
        self.buffered_packets += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Appends a name resolution block with one `nrb_record_ipv6` per address and name (no
    /// options); nothing when there are none. A name is cut to fit a record.
    pub(crate) fn name_resolution(&mut self, records: &[([u8; 16], String)]) {
        if records.is_empty() {
            return;
        }
        let start = self.begin(BLOCK_NRB);
        for (address, name) in records {
            let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX) - 17)];
            self.put_u16(NRB_RECORD_IPV6);
            self.put_u16((16 + name.len() + 1) as u16);
            self.buf.extend_from_slice(address);
            self.buf.extend_from_slice(name);
            self.buf.push(0);
            self.pad();
        }
        self.put_u16(NRB_RECORD_END);
        self.put_u16(0);
        self.finish(start);
    }

    /// Appends the interface statistics block.
    pub(crate) fn stats(&mut self, s: &Stats) {
        let start = self.begin(BLOCK_ISB);
        self.put_u32(0);
        self.put_u32((s.end_ns >> 32) as u32);
        self.put_u32(s.end_ns as u32);
        let ts = |ns: u64| {
            let mut v = [0u8; 8];
            v[..4].copy_from_slice(&((ns >> 32) as u32).to_le_bytes());
            v[4..].copy_from_slice(&(ns as u32).to_le_bytes());
            v
        };
        self.option(ISB_STARTTIME, &ts(s.start_ns));
        self.option(ISB_ENDTIME, &ts(s.end_ns));
        self.option(ISB_IFRECV, &s.received.to_le_bytes());
        self.option(ISB_IFDROP, &s.dropped.to_le_bytes());
        self.end_options();
        self.finish(start);
    }

    /// Writes what is buffered. On failure the output is cut back to the blocks it held
    /// before, so it stays a valid pcapng file; the buffered blocks are dropped.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let packets = std::mem::take(&mut self.buffered_packets);
        let len = self.buf.len() as u64;
        match self.out.take_blocks(&mut self.buf, packets) {
            Ok(()) => {
                self.written += len;
                Ok(())
            }
            Err(e) => {
                let _ = self.out.truncate(self.written);
                Err(e)
            }
        }
    }

    /// Starts a new section (its header and interface blocks) in the next file of a rotated
    /// set; what was buffered must have been flushed.
    pub(crate) fn new_section(&mut self, info: &CaptureInfo) {
        debug_assert!(self.buf.is_empty(), "the last file was flushed");
        self.buf.clear();
        self.buffered_packets = 0;
        self.written = 0;
        self.dbus_interface = false;
        self.section_header(info);
        self.interface(info);
    }

    /// Bytes of this section so far, written or buffered.
    #[must_use]
    pub(crate) fn len(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    /// The output, to tell it of a new file.
    pub(crate) fn output_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Whether the output is behind (see [`Output::blocked`]).
    pub(crate) fn blocked(&self) -> bool {
        self.out.blocked()
    }

    #[cfg(test)]
    /// Flushes and returns the output.
    pub(crate) fn into_inner(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }

    fn begin(&mut self, block_type: u32) -> usize {
        let start = self.buf.len();
        self.put_u32(block_type);
        self.put_u32(0);
        start
    }

    fn finish(&mut self, start: usize) {
        let total = (self.buf.len() - start + 4) as u32;
        self.put_u32(total);
        self.buf[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
    }

    fn option(&mut self, code: u16, value: &[u8]) {
        // Option values are at most 65,535 bytes; longer text is cut.
        let value = &value[..value.len().min(usize::from(u16::MAX) - 3)];
        self.put_u16(code);
        self.put_u16(value.len() as u16);
        self.buf.extend_from_slice(value);
        self.pad();
    }

    fn end_options(&mut self) {
        self.put_u16(OPT_END);
        self.put_u16(0);
    }

    fn pad(&mut self) {
        let n = (4 - self.buf.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..n]);
    }

    fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use pcap_parser::pcapng::{Block, OptionCode};

    use super::*;
    use crate::packet::Meta;

    fn info() -> CaptureInfo {
        CaptureInfo {
            section_comment: "synthesised headers".into(),
            hardware: "x86_64".into(),
            os: "Linux".into(),
            application: "udstrace test".into(),
            if_name: "udstrace".into(),
            if_description: "Unix sockets".into(),
            snaplen: 262_144,
        }
    }

    #[test]
    fn writes_parseable_blocks_with_options() {
        let mut w = PcapngWriter::new(Vec::new(), &info());
        let p = Packet {
            ts_ns: 1_700_000_000_123_456_789,
            meta: Meta {
                pid: 77,
                tid: 78,
                ..Meta::default()
            },
            orig_len: 7,
            payload: b"de",
            headers: b"abc",
            drops: 3,
        };
        w.packet(&p, "pid=1 type=stream").unwrap();
        w.stats(&Stats {
            start_ns: 1,
            end_ns: 2,
            received: 5,
            dropped: 3,
        });
        let bytes = w.into_inner().unwrap();

        let (rest, shb) = pcap_parser::pcapng::parse_sectionheaderblock(&bytes).unwrap();
        assert_eq!(shb.major_version, 1);
        let (rest, idb) = pcap_parser::pcapng::parse_block_le(rest).unwrap();
        let Block::InterfaceDescription(idb) = idb else {
            panic!("expected IDB, got {idb:?}")
        };
        assert_eq!(idb.linktype, pcap_parser::Linktype(i32::from(LINKTYPE_RAW)));
        assert_eq!(idb.snaplen, 262_144);
        assert_eq!(idb.if_tsresol, 9);
        let (rest, epb) = pcap_parser::pcapng::parse_block_le(rest).unwrap();
        let Block::EnhancedPacket(epb) = epb else {
            panic!("expected EPB")
        };
        assert_eq!(epb.caplen, 5);
        assert_eq!(epb.origlen, 10);
        assert_eq!(&epb.data[..5], b"abcde");
        assert_eq!(
            (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low),
            p.ts_ns
        );
        let opt = |code: u16| {
            epb.options
                .iter()
                .find(|o| o.code == OptionCode(code))
                .map(|o| o.as_bytes().unwrap().to_vec())
        };
        assert_eq!(opt(OPT_COMMENT).unwrap(), b"pid=1 type=stream");
        assert_eq!(opt(EPB_FLAGS).unwrap(), 2u32.to_le_bytes());
        assert_eq!(opt(EPB_DROPCOUNT).unwrap(), 3u64.to_le_bytes());
        assert_eq!(opt(EPB_PID_TID).unwrap(), [77, 0, 0, 0, 78, 0, 0, 0]);
        let (rest, isb) = pcap_parser::pcapng::parse_block_le(rest).unwrap();
        let Block::InterfaceStatistics(isb) = isb else {
            panic!("expected ISB")
        };
        let opt = |code: u16| {
            isb.options
                .iter()
                .find(|o| o.code == OptionCode(code))
                .map(|o| o.as_bytes().unwrap().to_vec())
        };
        assert_eq!(opt(ISB_IFRECV).unwrap(), 5u64.to_le_bytes());
        assert_eq!(opt(ISB_IFDROP).unwrap(), 3u64.to_le_bytes());
        assert!(rest.is_empty());
    }

    /// An output that accepts `room` bytes, then fails like a full disk.
    struct FullDisk {
        data: Vec<u8>,
        room: usize,
    }

    impl Output for FullDisk {
        fn write_blocks(&mut self, b: &[u8], _packets: u64) -> io::Result<()> {
            let n = b.len().min(self.room - self.data.len());
            self.data.extend_from_slice(&b[..n]);
            if n < b.len() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            Ok(())
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn full_disk_leaves_whole_blocks() {
        // Room for the section and interface blocks and half a packet.
        let header_len = PcapngWriter::new(Vec::new(), &info())
            .into_inner()
            .unwrap()
            .len();
        let out = FullDisk {
            data: Vec::new(),
            room: header_len + 750,
        };
        let mut w = PcapngWriter::new(out, &info());
        w.flush().unwrap();
        assert_eq!(w.written, header_len as u64);
        let p = Packet {
            ts_ns: 1,
            meta: Meta::default(),
            orig_len: 1500,
            payload: &[0u8; 1500],
            headers: &[],
            drops: 0,
        };
        w.packet(&p, "").unwrap();
        let err = w.flush().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(
            w.out.data.len(),
            header_len,
            "cut back to the last whole block"
        );
    }

    /// Name resolution records parse back: address, name, NUL, padding; no block when empty.
    #[test]
    fn name_resolution_block() {
        let mut w = PcapngWriter::new(Vec::new(), &info());
        let header_len = w.len();
        w.name_resolution(&[]);
        assert_eq!(w.len(), header_len);
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0xfd, 0x75, 0x64, 0x73]);
        a[15] = 9;
        let records = [
            (a, "curl[12]".to_string()),
            ([7; 16], "dockerd[3]:/d.sock".into()),
        ];
        w.name_resolution(&records);
        let bytes = w.into_inner().unwrap();
        let nrb_bytes = &bytes[header_len as usize..];
        // 4+4 header, (4+16+9 -> 32) + (4+16+19 -> 40), end record 4, total 4.
        assert_eq!(nrb_bytes.len(), 8 + 32 + 40 + 4 + 4);
        assert_eq!(&nrb_bytes[..4], &4u32.to_le_bytes());
        let (rest, nrb) = pcap_parser::pcapng::parse_block_le(nrb_bytes).unwrap();
        assert!(rest.is_empty());
        let Block::NameResolution(nrb) = nrb else {
            panic!("expected NRB, got {nrb:?}")
        };
        let got: Vec<(u16, Vec<u8>)> = nrb
            .nr
            .iter()
            .map(|r| (r.record_type.0, r.record_value.to_vec()))
            .collect();
        // The parser's values run to the padding.
        let value = |a: &[u8; 16], n: &str| {
            let mut v = a.to_vec();
            v.extend_from_slice(n.as_bytes());
            v.push(0);
            v.resize(v.len().next_multiple_of(4), 0);
            v
        };
        assert_eq!(
            got[..2],
            [
                (2, value(&a, "curl[12]")),
                (2, value(&[7; 16], "dockerd[3]:/d.sock"))
            ]
        );
        assert!(nrb.options.is_empty());
    }
}
