//! Where captured packets go: a pcapng file or stream (or a rotated set of files:
//! `rotate.rs`), or the text view.

use std::io;

use super::{
    file::{self, Destination},
    names::AddressNames,
    pcapng::{CaptureInfo, Output, PcapngWriter, Stats},
    rotate::{self, Rotation},
    text::{write_packet, PayloadStyle},
    writer::{self, Handoff, Writer},
};
use crate::{
    error::Error,
    packet::{Comments, Packet},
};

/// A destination for packets.
pub(crate) trait Sink {
    fn packet(&mut self, p: &Packet<'_>) -> io::Result<()>;
    /// Makes everything so far visible to readers (called on a short timer).
    fn flush(&mut self) -> io::Result<()>;
    /// Ends the capture with its statistics.
    fn finish(&mut self, stats: &Stats) -> io::Result<()>;
    /// Whether the output is behind: the capture waits before handing it more.
    fn blocked(&self) -> bool {
        false
    }
    /// Whether the output takes no more packets (`-G` with `-W`: its last file is complete):
    /// the capture ends.
    fn done(&self) -> bool {
        false
    }
}

/// pcapng to a file or standard output (or, in tests, memory).
pub(crate) struct PcapngSink<W: Output> {
    writer: PcapngWriter<W>,
    comments: Comments,
    /// The addresses named so far.
    names: AddressNames,
}

impl<W: Output> PcapngSink<W> {
    pub(crate) fn new(out: W, info: &CaptureInfo) -> Self {
        Self {
            writer: PcapngWriter::new(out, info),
            comments: Comments::default(),
            names: AddressNames::default(),
        }
    }
}

#[cfg(test)]
impl<W: Output> PcapngSink<W> {
    /// Flushes and returns the output.
    pub(crate) fn into_output(self) -> io::Result<W> {
        self.writer.into_inner()
    }
}

impl<W: Output> Sink for PcapngSink<W> {
    fn packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        self.writer.name_resolution(self.names.learn(p));
        self.writer.packet(p, self.comments.write(&p.meta))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        self.writer.stats(stats);
        self.writer.flush()
    }

    fn blocked(&self) -> bool {
        self.writer.blocked()
    }
}

/// Text handed to the output thread once this much is buffered.
const TEXT_FLUSH_AT: usize = 64 * 1024;

/// The text view on standard output.
pub(crate) struct TextSink {
    out: Handoff,
    buf: String,
    /// Packets in `buf`.
    packets: u64,
    style: PayloadStyle,
}

impl TextSink {
    #[must_use]
    pub(crate) fn new(out: Handoff, style: PayloadStyle) -> Self {
        Self {
            out,
            buf: String::with_capacity(TEXT_FLUSH_AT + 4096),
            packets: 0,
            style,
        }
    }
}

impl Sink for TextSink {
    fn packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        write_packet(&mut self.buf, p, self.style);
        self.packets += 1;
        if self.buf.len() >= TEXT_FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let packets = std::mem::take(&mut self.packets);
        let result = self.out.write_blocks(self.buf.as_bytes(), packets);
        self.buf.clear();
        result
    }

    fn finish(&mut self, _stats: &Stats) -> io::Result<()> {
        self.flush()
    }

    fn blocked(&self) -> bool {
        self.out.blocked()
    }
}

/// The sink for `-w` (pcapng; with `rotation`, to a rotated set of files: `rotate.rs`) or,
/// without it, the text view on standard output, and the thread that writes its bytes. The
/// output is checked and opened here (`file.rs`).
pub(crate) fn open(
    write: Option<&Destination>,
    rotation: Option<&Rotation>,
    info: &CaptureInfo,
    style: PayloadStyle,
) -> Result<(Box<dyn Sink>, Writer), Error> {
    if let (Some(rotation), Some(Destination::File(pattern))) = (rotation, write) {
        return rotate::open(pattern, rotation.clone(), info);
    }
    let dest = write.cloned().unwrap_or(Destination::Stdout);
    let opened = file::open(&dest)?;
    let ours = matches!(dest, Destination::File(_));
    let (handoff, writer) = writer::start(opened, ours, None).map_err(|source| Error::Output {
        path: Destination::name_of(write),
        source,
    })?;
    let sink: Box<dyn Sink> = match write {
        Some(_) => Box::new(PcapngSink::new(handoff, info)),
        None => Box::new(TextSink::new(handoff, style)),
    };
    Ok((sink, writer))
}
