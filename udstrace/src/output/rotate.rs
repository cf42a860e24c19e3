//! Rotation, as tcpdump rotates its files:
//!
//! - `-C SIZE`: before a packet, a file that holds more than SIZE bytes ends and the next one
//!   begins: FILE, FILE1, FILE2, ... (so a file holds at most SIZE bytes, one packet and its
//!   statistics block).
//! - `-G SECONDS`: a file ends once SECONDS have passed since its first second (checked at
//!   each packet, by its timestamp, and every 100 ms); `-w`'s name is a strftime(3) pattern
//!   expanded with the local time the file begins. With `-C` too, the numbers start again at
//!   each new span.
//! - `-W COUNT`: with `-C`, a ring of COUNT files FILE0, FILE1, ... (numbered with as many
//!   digits as COUNT-1 has), each replaced in turn; with `-G` alone, the capture ends once the
//!   COUNT-th file is complete.
//! - `-z COMMAND`: `COMMAND FILE` runs on each file once it is complete and closed (no shell,
//!   not waited for; a thread reaps it and says if it failed), the last one too.
//!
//! Every file is a whole capture: its own section header and interface blocks, then at its
//! end a statistics block of its own span (the losses the kernel reported while it was
//! written; the last file's makes the sum over the set the capture's total). Files change
//! between packets: the segments of one long message may fall in two files, each packet with
//! its `seg_offset=`. Each file is opened as `-w` opens one (`file.rs`) and written by the same
//! output thread (`writer.rs`), which closes it once all its blocks are in it.

use std::{
    ffi::{CString, OsStr, OsString},
    io,
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        fs::PermissionsExt,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
};

use super::{
    file::{self, Destination},
    names::AddressNames,
    pcapng::{CaptureInfo, PcapngWriter, Stats},
    sink::Sink,
    writer::{self, Handoff, Then, Writer},
};
use crate::{
    error::Error,
    packet::{Comments, Packet},
    sys,
};

/// The longest name a file of the set may have once expanded (`PATH_MAX`).
const NAME_MAX: usize = 4096;

/// `-C`, `-G`, `-W` and `-z`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// `-C`: bytes beyond which a file ends, before its next packet.
    pub(crate) size: Option<u64>,
    /// `-G`: seconds a file spans.
    pub(crate) seconds: Option<u32>,
    /// `-W`: files in the ring (`-C`), or files before the capture ends (`-G` alone).
    pub(crate) count: Option<u32>,
    /// `-z`: the command run on each complete file.
    pub(crate) command: Option<OsString>,
}

/// Why the file being written ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// `-C`: it is full; the next file has the next number.
    Size,
    /// `-G`: its span is over; the next file begins a span at this second.
    Time(i64),
    /// `-G` with `-W`: its span is over and it was the last file.
    End,
}

impl Rotation {
    /// Digits of a `-C` file's number: none without `-W` (FILE, FILE1, ...), else as many as
    /// COUNT-1 has (FILE0 ... FILE9 for 10 files), as tcpdump numbers them.
    fn digits(&self) -> usize {
        match (self.size, self.count) {
            (Some(_), Some(count)) => {
                let mut n = count.saturating_sub(1);
                let mut digits = 0;
                while n > 0 {
                    digits += 1;
                    n /= 10;
                }
                digits
            }
            _ => 0,
        }
    }

    /// The name of file `number` (of `-C`) of the span that began at `secs` (`-G`), from
    /// `-w`'s `pattern`.
    pub(crate) fn name(&self, pattern: &Path, number: u32, secs: i64) -> Result<PathBuf, String> {
        let mut name = if self.seconds.is_some() {
            let format = CString::new(pattern.as_os_str().as_bytes())
                .map_err(|_| "the name holds a NUL byte".to_string())?;
            let expanded = sys::strftime_local(&format, secs, NAME_MAX).ok_or_else(|| {
                format!("the name is empty or longer than {NAME_MAX} bytes once its times are filled in")
            })?;
            OsString::from_vec(expanded)
        } else {
            pattern.as_os_str().to_owned()
        };
        let digits = self.digits();
        if number != 0 || digits != 0 {
            name.push(format!("{number:0digits$}"));
        }
        Ok(PathBuf::from(name))
    }

    /// The number of the `-C` file after file `number`: around the ring with `-W`.
    fn next_number(&self, number: u32) -> u32 {
        let next = number.saturating_add(1);
        match self.count {
            Some(count) if self.size.is_some() && next >= count => 0,
            _ => next,
        }
    }

    /// Whether `file`, holding `bytes`, ends now (`now_secs`), before a packet if `packet`.
    /// The span is checked first: a new span begins with a new, small file.
    fn due(&self, file: &Span, files: u32, bytes: u64, now_secs: i64, packet: bool) -> Option<Due> {
        if let Some(seconds) = self.seconds {
            if now_secs.saturating_sub(file.secs) >= i64::from(seconds) {
                let last = self.size.is_none() && self.count.is_some_and(|c| files >= c);
                return Some(if last { Due::End } else { Due::Time(now_secs) });
            }
        }
        let full = self.size.is_some_and(|size| bytes > size);
        (packet && full && file.packets != 0).then_some(Due::Size)
    }
}

/// Whether `command` (`-z`) is a program that can run: a path to an executable file, or the
/// name of one in `$PATH`.
#[must_use]
pub(crate) fn runnable(command: &OsStr) -> bool {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.as_bytes().contains(&b'/') {
        return executable(Path::new(command));
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| !command.is_empty() && executable(&dir.join(command)))
    })
}

/// Runs `command file`, as tcpdump does: no shell, not waited for by the capture. A thread of
/// its own reaps it (no zombie is left) and says if it failed.
fn run(command: &OsStr, file: &Path) {
    let shown = format!("-z {} {}", Path::new(command).display(), file.display());
    match Command::new(command).arg(file).stdin(Stdio::null()).spawn() {
        Err(e) => eprintln!("udstrace: {shown}: {e}"),
        Ok(mut child) => {
            let _ = thread::Builder::new()
                .name("udstrace-z".into())
                .spawn(move || match child.wait() {
                    Ok(status) if !status.success() => eprintln!("udstrace: {shown}: {status}"),
                    Ok(_) => {}
                    Err(e) => eprintln!("udstrace: {shown}: {e}"),
                });
        }
    }
}

/// The file being written.
#[derive(Debug)]
struct Span {
    name: PathBuf,
    /// Its `-C` number (0: the first of its `-G` span).
    number: u32,
    /// `-G`: the second its span began.
    secs: i64,
    /// Wall-clock nanoseconds when it began.
    start_ns: u64,
    packets: u64,
    /// Losses the kernel reported while it was written.
    drops: u64,
}

/// Wall-clock nanoseconds now.
fn now_ns() -> u64 {
    u64::try_from(sys::clock_ns(libc::CLOCK_REALTIME)).unwrap_or(0)
}

fn secs(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX)
}

/// pcapng to a rotated set of files.
pub(crate) struct RotatingSink {
    writer: PcapngWriter<Handoff>,
    comments: Comments,
    /// The addresses named in the file being written.
    names: AddressNames,
    info: CaptureInfo,
    rotation: Rotation,
    /// `-w`'s name.
    pattern: PathBuf,
    file: Span,
    /// Files begun (`-G` with `-W` ends after COUNT).
    files: u32,
    /// Losses in the files before this one.
    earlier_drops: u64,
    /// The last file is complete (`-G` with `-W`): the capture ends.
    done: bool,
}

/// The sink of a capture rotated as `rotation` says, its first file opened (as `-w` opens
/// one), and the output thread that writes them.
pub(crate) fn open(
    pattern: &Path,
    rotation: Rotation,
    info: &CaptureInfo,
) -> Result<(Box<dyn Sink>, Writer), Error> {
    let start_ns = now_ns();
    let name = rotation
        .name(pattern, 0, secs(start_ns))
        .map_err(|reason| Error::Output {
            path: pattern.to_path_buf(),
            source: io::Error::other(reason),
        })?;
    let opened = file::open(&Destination::File(name.clone()))?;
    let (handoff, writer) =
        writer::start(opened, true, Some(name.clone())).map_err(|source| Error::Output {
            path: name.clone(),
            source,
        })?;
    let sink = RotatingSink {
        writer: PcapngWriter::new(handoff, info),
        comments: Comments::default(),
        names: AddressNames::default(),
        info: info.clone(),
        pattern: pattern.to_path_buf(),
        file: Span {
            name,
            number: 0,
            secs: secs(start_ns),
            start_ns,
            packets: 0,
            drops: 0,
        },
        files: 1,
        earlier_drops: 0,
        done: false,
        rotation,
    };
    Ok((Box::new(sink), writer))
}

impl RotatingSink {
    /// What runs once the file being written is closed.
    fn then(&self) -> Option<Then> {
        let command = self.rotation.command.clone()?;
        let file = self.file.name.clone();
        Some(Box::new(move || run(&command, &file)))
    }

    /// Ends the file being written with the statistics of its span, `dropped` losses in it,
    /// and hands it to be closed.
    fn close(&mut self, end_ns: u64, dropped: u64) -> io::Result<()> {
        self.writer.stats(&Stats {
            start_ns: self.file.start_ns,
            end_ns,
            received: self.file.packets + dropped,
            dropped,
        });
        self.writer.flush()?;
        let then = self.then();
        self.writer.output_mut().close(then)
    }

    /// Ends the file being written and begins the next.
    fn rotate(&mut self, due: Due) -> io::Result<()> {
        let now = now_ns();
        self.close(now, self.file.drops)?;
        self.earlier_drops += self.file.drops;
        if due == Due::End {
            self.done = true;
            eprintln!(
                "udstrace: {} files written (-W {}): the capture ends",
                self.files, self.files
            );
            return Ok(());
        }
        let (number, span) = match due {
            Due::Time(secs) => (0, secs),
            _ => (self.rotation.next_number(self.file.number), self.file.secs),
        };
        let name = self
            .rotation
            .name(&self.pattern, number, span)
            .map_err(|reason| {
                Error::Output {
                    path: self.pattern.clone(),
                    source: io::Error::other(reason),
                }
                .into_io()
            })?;
        let opened = file::open(&Destination::File(name.clone())).map_err(Error::into_io)?;
        self.writer.output_mut().open(opened, name.clone())?;
        self.writer.new_section(&self.info);
        self.names.new_section();
        self.files = self.files.saturating_add(1);
        self.file = Span {
            name,
            number,
            secs: span,
            start_ns: now,
            packets: 0,
            drops: 0,
        };
        Ok(())
    }
}

impl Sink for RotatingSink {
    fn packet(&mut self, p: &Packet<'_>) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        let due = self.rotation.due(
            &self.file,
            self.files,
            self.writer.len(),
            secs(p.ts_ns),
            true,
        );
        // The last file of `-G -W` is ended by `flush`, between two drains, so that no packet
        // the capture counts is left out.
        if let Some(due @ (Due::Size | Due::Time(_))) = due {
            self.rotate(due)?;
        }
        self.writer.name_resolution(self.names.learn(p));
        self.writer.packet(p, self.comments.write(&p.meta))?;
        self.file.packets += 1;
        self.file.drops += p.drops;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        let now = secs(now_ns());
        if let Some(due) = self
            .rotation
            .due(&self.file, self.files, self.writer.len(), now, false)
        {
            self.rotate(due)?;
        }
        self.writer.flush()
    }

    fn finish(&mut self, stats: &Stats) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        if self.files == 1 {
            self.file.start_ns = stats.start_ns;
        }
        // The rest of the capture's losses: the set's statistics add up to its total.
        let dropped = stats.dropped.saturating_sub(self.earlier_drops);
        self.close(stats.end_ns, dropped)
    }

    fn blocked(&self) -> bool {
        self.writer.blocked()
    }

    fn done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use pcap_parser::{pcapng::Block, traits::PcapReaderIterator, PcapBlockOwned, PcapNGReader};

    use super::*;
    use crate::{output::section::capture_info, packet::Meta};

    fn size(bytes: u64, count: Option<u32>) -> Rotation {
        Rotation {
            size: Some(bytes),
            count,
            ..Rotation::default()
        }
    }

    #[test]
    fn numbers_as_tcpdump() {
        let p = Path::new("/x/cap.pcapng");
        let name = |r: &Rotation, n| r.name(p, n, 0).unwrap().display().to_string();
        let plain = size(1, None);
        assert_eq!(name(&plain, 0), "/x/cap.pcapng");
        assert_eq!(name(&plain, 1), "/x/cap.pcapng1");
        assert_eq!(name(&plain, 12), "/x/cap.pcapng12");
        assert_eq!(plain.next_number(12), 13);
        for (count, first, last) in [
            (1, "/x/cap.pcapng", "/x/cap.pcapng"),
            (3, "/x/cap.pcapng0", "/x/cap.pcapng2"),
            (10, "/x/cap.pcapng0", "/x/cap.pcapng9"),
            (11, "/x/cap.pcapng00", "/x/cap.pcapng10"),
            (100, "/x/cap.pcapng00", "/x/cap.pcapng99"),
            (101, "/x/cap.pcapng000", "/x/cap.pcapng100"),
        ] {
            let ring = size(1, Some(count));
            assert_eq!(name(&ring, 0), first, "-W {count}");
            assert_eq!(name(&ring, count - 1), last, "-W {count}");
            assert_eq!(ring.next_number(count - 1), 0, "-W {count}");
            assert_eq!(ring.next_number(0), 1 % count, "-W {count}");
        }
        // -W without -C counts files, it does not number them.
        let timed = Rotation {
            seconds: Some(1),
            count: Some(5),
            ..Rotation::default()
        };
        assert_eq!(name(&timed, 0), "/x/cap.pcapng");
    }

    #[test]
    fn strftime_names() {
        let timed = Rotation {
            seconds: Some(60),
            ..Rotation::default()
        };
        // 2023-11-14 22:13:20 UTC: November 2023 in every time zone.
        let time = 1_700_000_000;
        let (hour, minute, second) = sys::local_time_of_day(time);
        let got = timed
            .name(Path::new("d/%Y%m-%H%M%S-%%.pcapng"), 0, time)
            .unwrap();
        assert_eq!(
            got,
            PathBuf::from(format!("d/202311-{hour:02}{minute:02}{second:02}-%.pcapng"))
        );
        assert_eq!(
            timed.name(Path::new("%s"), 0, time).unwrap(),
            Path::new("1700000000")
        );
        // With -C too, numbers follow the time.
        let both = Rotation {
            size: Some(1),
            ..timed.clone()
        };
        assert_eq!(
            both.name(Path::new("c%s."), 2, time).unwrap(),
            Path::new("c1700000000.2")
        );
        // Without -G a % is a %.
        assert_eq!(
            size(1, None).name(Path::new("%s"), 0, time).unwrap(),
            Path::new("%s")
        );
        assert!(timed.name(Path::new(""), 0, time).is_err());
        let long = "%Y".repeat(NAME_MAX);
        assert!(timed.name(Path::new(&long), 0, time).is_err());
    }

    #[test]
    fn when_files_end() {
        let file = |packets| Span {
            name: PathBuf::new(),
            number: 0,
            secs: 100,
            start_ns: 0,
            packets,
            drops: 0,
        };
        let c = size(1000, None);
        assert_eq!(c.due(&file(1), 1, 1000, 100, true), None);
        assert_eq!(c.due(&file(1), 1, 1001, 100, true), Some(Due::Size));
        assert_eq!(
            c.due(&file(1), 1, 1001, 100, false),
            None,
            "only before a packet"
        );
        assert_eq!(
            c.due(&file(0), 1, 5000, 100, true),
            None,
            "never an empty file"
        );
        let g = Rotation {
            seconds: Some(2),
            ..Rotation::default()
        };
        assert_eq!(g.due(&file(0), 1, 0, 101, true), None);
        assert_eq!(g.due(&file(0), 1, 0, 102, false), Some(Due::Time(102)));
        assert_eq!(g.due(&file(0), 1, 0, 99, false), None, "a clock set back");
        let gw = Rotation {
            count: Some(3),
            ..g.clone()
        };
        assert_eq!(gw.due(&file(5), 2, 0, 102, true), Some(Due::Time(102)));
        assert_eq!(gw.due(&file(5), 3, 0, 102, true), Some(Due::End));
        // -G and -C: time first; -W is then the ring's, and the capture goes on.
        let gc = Rotation {
            size: Some(1000),
            count: Some(3),
            ..g
        };
        assert_eq!(gc.due(&file(5), 9, 5000, 102, true), Some(Due::Time(102)));
        assert_eq!(gc.due(&file(5), 9, 5000, 101, true), Some(Due::Size));
    }

    #[test]
    fn runnable_commands() {
        assert!(runnable(OsStr::new("true")));
        assert!(runnable(OsStr::new("/bin/sh")));
        assert!(!runnable(OsStr::new("/etc/passwd")));
        assert!(!runnable(OsStr::new("no-such-command-here")));
        assert!(!runnable(OsStr::new("")));
    }

    /// The blocks of a pcapng file: (section headers, interfaces, packets, statistics
    /// (received, dropped)).
    fn blocks(path: &Path) -> (usize, usize, usize, Vec<(u64, u64)>) {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = PcapNGReader::new(1 << 20, bytes.as_slice()).unwrap();
        let (mut shb, mut idb, mut epb, mut isb) = (0, 0, 0, Vec::new());
        loop {
            match reader.next() {
                Ok((n, block)) => {
                    if let PcapBlockOwned::NG(b) = block {
                        match b {
                            Block::SectionHeader(_) => shb += 1,
                            Block::InterfaceDescription(_) => idb += 1,
                            Block::EnhancedPacket(_) => epb += 1,
                            Block::InterfaceStatistics(s) => {
                                let opt = |code| {
                                    s.options
                                        .iter()
                                        .find(|o| o.code == pcap_parser::pcapng::OptionCode(code))
                                        .map(|o| {
                                            u64::from_le_bytes(
                                                o.as_bytes().unwrap()[..8].try_into().unwrap(),
                                            )
                                        })
                                        .unwrap()
                                };
                                isb.push((opt(4), opt(5)));
                            }
                            _ => {}
                        }
                    }
                    reader.consume(n);
                }
                Err(pcap_parser::PcapError::Eof) => break,
                // The reader learns of the end of its input by reading again.
                Err(pcap_parser::PcapError::Incomplete(_)) => {
                    reader.refill().unwrap();
                    if let Err(pcap_parser::PcapError::Incomplete(_)) = reader.next() {
                        panic!("{} ends with an incomplete block", path.display());
                    }
                }
                Err(e) => panic!("{}: {e:?}", path.display()),
            }
        }
        (shb, idb, epb, isb)
    }

    /// `-C` with `-W 3`: whole captures of their own, the newest packets in the ring, the
    /// statistics adding up.
    #[test]
    fn a_ring_of_whole_captures() {
        let dir = std::env::temp_dir().join(format!("udstrace-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let pattern = dir.join("cap.pcapng");
        let (mut sink, writer) = open(
            &pattern,
            size(10_000, Some(3)),
            &capture_info(65_536, "test"),
        )
        .unwrap();
        let payload = [7u8; 1000];
        for i in 0..50u64 {
            sink.packet(&Packet {
                ts_ns: now_ns(),
                meta: Meta::default(),
                orig_len: 1000,
                payload: &payload,
                headers: &[],
                drops: u64::from(i == 49),
            })
            .unwrap();
        }
        sink.finish(&Stats {
            start_ns: 1,
            end_ns: now_ns(),
            received: 53,
            dropped: 3,
        })
        .unwrap();
        drop(sink);
        while !writer.finished() {
            thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(writer.written(), 50);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["cap.pcapng0", "cap.pcapng1", "cap.pcapng2"]);
        let mut packets = 0;
        for name in &names {
            let path = dir.join(name);
            let (shb, idb, epb, isb) = blocks(&path);
            assert_eq!((shb, idb, isb.len()), (1, 1, 1), "{name}");
            assert!(std::fs::metadata(&path).unwrap().len() <= 10_000 + 2_000);
            assert_eq!(isb[0].0 - isb[0].1, epb as u64, "{name}");
            packets += epb;
        }
        // 50 packets of about 1.1 kB in files of 10 kB: the last three files of six.
        assert!((20..50).contains(&packets), "{packets}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
