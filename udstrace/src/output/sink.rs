//! Where captured packets go: a pcapng file or stream, or the text view.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Stdout, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::{
    pcapng::{CaptureInfo, Output, PcapngWriter, Stats},
    text::{write_packet, PayloadStyle},
};
use crate::{error::Error, packet::Packet};

/// A destination for packets.
pub(crate) trait Sink {
    fn packet(&mut self, p: &Packet<'_>) -> io::Result<()>;
    /// Makes everything so far visible to readers (called on a short timer).
    fn flush(&mut self) -> io::Result<()>;
    /// Ends the capture with its statistics.
    fn finish(&mut self, stats: &Stats) -> io::Result<()>;
}

/// Creates a capture file readable by its owner only: captures hold secrets.
pub(crate) fn create_capture_file(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Output {
            path: path.to_path_buf(),
            source,
        })?;
    // An existing regular file keeps its mode through O_TRUNC: tighten it. Devices and FIFOs
    // (`/dev/null`, Wireshark's extcap pipe) are left as they are.
    if file.metadata().is_ok_and(|m| m.is_file()) {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|source| Error::Output {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(file)
}

/// pcapng to a file or standard output.
pub(crate) struct PcapngSink<W: Output> {
    writer: PcapngWriter<W>,
    comment: String,
}

impl<W: Output> PcapngSink<W> {
    pub(crate) fn new(out: W, info: &CaptureInfo) -> Self {
        Self {
            writer: PcapngWriter::new(out, info),
            comment: String::with_capacity(512),
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
        p.meta.write_comment(&mut self.comment);
        self.writer.packet(p, &self.comment)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        self.writer.stats(stats);
        self.writer.flush()
    }
}

/// The text view on standard output.
pub(crate) struct TextSink {
    out: BufWriter<Stdout>,
    line: String,
    style: PayloadStyle,
}

impl TextSink {
    #[must_use]
    pub(crate) fn new(style: PayloadStyle) -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, io::stdout()),
            line: String::with_capacity(256),
            style,
        }
    }
}

impl Sink for TextSink {
    fn packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        self.line.clear();
        write_packet(&mut self.line, p, self.style);
        self.out.write_all(self.line.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _stats: &Stats) -> io::Result<()> {
        self.out.flush()
    }
}

/// The sink for `-w PATH` (`-` is standard output) or, without it, the text view.
pub(crate) fn open(
    write: Option<&Path>,
    info: &CaptureInfo,
    style: PayloadStyle,
) -> Result<(Box<dyn Sink>, PathBuf), Error> {
    match write {
        Some(p) if p == Path::new("-") => Ok((
            Box::new(PcapngSink::new(io::stdout(), info)),
            p.to_path_buf(),
        )),
        Some(p) => {
            let file = create_capture_file(p)?;
            Ok((Box::new(PcapngSink::new(file, info)), p.to_path_buf()))
        }
        None => Ok((
            Box::new(TextSink::new(style)),
            PathBuf::from("standard output"),
        )),
    }
}
