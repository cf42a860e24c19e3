//! Helpers of udstrace's integration tests: run the real `udstrace` binary, make traffic with
//! known bytes, and read what it captured, both with a pcapng parser of our own and with
//! `tshark`.
//!
//! The binary is `$UDSTRACE_BIN`, or `target/debug/udstrace` of this workspace. These tests load
//! BPF programs: they need root.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::{fs::MetadataExt, io::AsRawFd},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

pub mod docker;
pub mod io_uring;
pub mod sys;

use pcap_parser::{
    pcapng::{Block, OptionCode},
    traits::PcapReaderIterator,
    PcapBlockOwned, PcapError, PcapNGReader,
};

/// Path of the udstrace binary under test.
#[must_use]
pub fn udstrace_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("UDSTRACE_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/udstrace");
    assert!(
        p.exists(),
        "{} is missing: build it (`cargo build -p udstrace`) or set UDSTRACE_BIN",
        p.display()
    );
    p
}

/// A running udstrace.
pub struct Udstrace {
    child: Child,
    stderr: mpsc::Receiver<String>,
    /// stderr lines read so far.
    pub stderr_lines: Vec<String>,
}

/// How a udstrace run ended.
#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: Vec<String>,
}

impl Finished {
    /// The `N packets captured, N lost` line, parsed.
    #[must_use]
    pub fn summary(&self) -> (u64, u64) {
        let line = self
            .stderr
            .iter()
            .find(|l| l.contains("packets captured"))
            .unwrap_or_else(|| panic!("no summary line in {:?}", self.stderr));
        let mut words = line.split_whitespace();
        let packets = words.next().unwrap().parse().unwrap();
        let lost = line
            .split(", ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        (packets, lost)
    }
}

impl Udstrace {
    /// Starts udstrace with `args` and waits until it says it is listening.
    #[must_use]
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(udstrace_bin());
        cmd.args(args);
        Self::start_command(cmd)
    }

    /// Starts `cmd` (udstrace, or a command that runs it, such as `nohup udstrace ...`) with
    /// standard input from /dev/null and standard output piped, and waits until it says it is
    /// listening.
    #[must_use]
    pub fn start_command(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn udstrace");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut me = Self {
            child,
            stderr: rx,
            stderr_lines: Vec::new(),
        };
        // Generous: loading and verifying the programs takes tens of seconds on 5.10 under
        // emulation, more on a loaded machine.
        while let Ok(line) = me.stderr.recv_timeout(Duration::from_mins(3)) {
            let listening = line.starts_with("listening on");
            me.stderr_lines.push(line);
            if listening {
                return me;
            }
        }
        let _ = me.child.kill();
        panic!("udstrace did not start listening: {:?}", me.stderr_lines);
    }

    /// The attach backend udstrace says it uses (`listening on udstrace (NAME backend), ...`).
    #[must_use]
    pub fn backend(&self) -> &str {
        self.stderr_lines
            .iter()
            .find_map(|l| l.strip_prefix("listening on udstrace ("))
            .and_then(|rest| rest.split_once(" backend)"))
            .map_or("", |(name, _)| name)
    }

    /// udstrace's standard output, to read while it runs.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child.stdout.take().expect("stdout not taken yet")
    }

    /// Waits (up to `timeout`) for a line of udstrace's stderr that contains `needle`; the
    /// line. Lines read on the way are kept in `stderr_lines`.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(line) = self.stderr_lines.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = self.stderr.recv_timeout(left) else {
                panic!("no `{needle}` from udstrace: {:?}", self.stderr_lines);
            };
            self.stderr_lines.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Whether udstrace is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Process id of udstrace.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for udstrace to finish.
    #[must_use]
    pub fn stop(self) -> Finished {
        // Let the last records reach the ring buffer's reader.
        std::thread::sleep(Duration::from_millis(200));
        // Like `kill -TERM`: whether it has exited already shows in its status.
        let _ = sys::kill(i32::try_from(self.child.id()).unwrap(), libc::SIGTERM);
        self.wait()
    }

    /// Waits for udstrace to exit by itself.
    #[must_use]
    pub fn wait(mut self) -> Finished {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            use std::io::Read;
            out.read_to_string(&mut stdout).unwrap();
        }
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.stderr_lines.push(line);
        }
        Finished {
            success: status.success(),
            code: status.code(),
            stdout,
            stderr: self.stderr_lines,
        }
    }
}

/// Runs udstrace to completion (for error cases).
#[must_use]
pub fn run(args: &[&str]) -> Finished {
    let out = Command::new(udstrace_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn udstrace");
    Finished {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(str::to_string)
            .collect(),
    }
}

/// Inode number of a socket (or any fd).
#[must_use]
pub fn inode(fd: &impl AsRawFd) -> u64 {
    // SAFETY: the descriptor stays open for the borrow of `fd`, and `ManuallyDrop` keeps this
    // temporary `File` from closing it.
    let file = std::mem::ManuallyDrop::new(unsafe {
        <std::fs::File as std::os::unix::io::FromRawFd>::from_raw_fd(fd.as_raw_fd())
    });
    file.metadata().unwrap().ino()
}

/// The number in a `/proc` link such as `net:[4026531840]` or `socket:[123]`, if `link` is
/// one of `kind`.
#[must_use]
pub fn link_number(link: &Path, kind: &str) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    target
        .to_str()?
        .strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The synthesised address of the socket with inode `ino` in a capture, as tshark prints it.
#[must_use]
pub fn address(packets: &[Pkt], ino: u64) -> String {
    packets.iter().find(|p| p.src() == ino).map_or_else(
        || panic!("socket {ino} sent nothing in the capture"),
        |p| p.src_addr().to_string(),
    )
}

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Pkt {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
    pub comment: String,
    pub flags: Option<u32>,
    pub drops: u64,
    pub pid_tid: Option<(u32, u32)>,
}

impl Pkt {
    fn number(&self, key: &str) -> u64 {
        self.meta(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {}", self.comment))
    }

    /// Inode of the sending socket.
    #[must_use]
    pub fn src(&self) -> u64 {
        self.number("ino")
    }

    /// Inode of the peer socket (0: unknown).
    #[must_use]
    pub fn dst(&self) -> u64 {
        self.number("peer_ino")
    }

    /// Synthesised source address.
    #[must_use]
    pub fn src_addr(&self) -> std::net::Ipv6Addr {
        <[u8; 16]>::try_from(&self.data[8..24]).unwrap().into()
    }

    /// Synthesised destination address.
    #[must_use]
    pub fn dst_addr(&self) -> std::net::Ipv6Addr {
        <[u8; 16]>::try_from(&self.data[24..40]).unwrap().into()
    }

    #[must_use]
    pub fn is_tcp(&self) -> bool {
        self.data[6] == 6
    }

    fn header_len(&self) -> usize {
        if self.is_tcp() {
            60
        } else {
            48
        }
    }

    /// Captured payload.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.data[self.header_len()..]
    }

    /// Payload length on the wire.
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.orig_len as usize - self.header_len()
    }

    /// TCP sequence number.
    #[must_use]
    pub fn seq(&self) -> u32 {
        u32::from_be_bytes(self.data[44..48].try_into().unwrap())
    }

    /// A `key=value` of the comment.
    #[must_use]
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.comment
            .split(' ')
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

/// A capture file, parsed.
#[derive(Debug)]
pub struct CaptureFile {
    pub packets: Vec<Pkt>,
    /// (received, dropped) of the interface statistics block, if present.
    pub stats: Option<(u64, u64)>,
    pub linktype: i32,
    pub if_tsresol: u8,
    /// Whether the last block was the statistics block.
    pub ends_with_stats: bool,
}

/// Parses a pcapng file; panics if any part of it is invalid.
#[must_use]
pub fn read_capture(path: &Path) -> CaptureFile {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = PcapNGReader::new(1 << 20, bytes.as_slice()).expect("pcapng section header");
    let mut out = CaptureFile {
        packets: Vec::new(),
        stats: None,
        linktype: -1,
        if_tsresol: 0,
        ends_with_stats: false,
    };
    loop {
        match reader.next() {
            Ok((n, block)) => {
                out.ends_with_stats = false;
                if let PcapBlockOwned::NG(b) = block {
                    match b {
                        Block::InterfaceDescription(idb) => {
                            out.linktype = idb.linktype.0;
                            out.if_tsresol = idb.if_tsresol;
                        }
                        Block::EnhancedPacket(epb) => {
                            let opt = |code: u16| {
                                epb.options
                                    .iter()
                                    .find(|o| o.code == OptionCode(code))
                                    .map(|o| o.as_bytes().unwrap().to_vec())
                            };
                            out.packets.push(Pkt {
                                ts_ns: (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low),
                                orig_len: epb.origlen,
                                data: epb.data[..epb.caplen as usize].to_vec(),
                                comment: opt(1)
                                    .map(|c| String::from_utf8(c).unwrap())
                                    .unwrap_or_default(),
                                flags: opt(2)
                                    .map(|v| u32::from_le_bytes(v[..4].try_into().unwrap())),
                                drops: opt(4)
                                    .map_or(0, |v| u64::from_le_bytes(v[..8].try_into().unwrap())),
                                pid_tid: opt(8).map(|v| {
                                    (
                                        u32::from_le_bytes(v[..4].try_into().unwrap()),
                                        u32::from_le_bytes(v[4..8].try_into().unwrap()),
                                    )
                                }),
                            });
                        }
                        Block::InterfaceStatistics(isb) => {
                            let opt = |code: u16| {
                                isb.options
                                    .iter()
                                    .find(|o| o.code == OptionCode(code))
                                    .map(|o| {
                                        u64::from_le_bytes(
                                            o.as_bytes().unwrap()[..8].try_into().unwrap(),
                                        )
                                    })
                            };
                            out.stats = Some((opt(4).unwrap(), opt(5).unwrap()));
                            out.ends_with_stats = true;
                        }
                        _ => {}
                    }
                }
                reader.consume(n);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                reader.refill().unwrap();
                // A truncated last block shows as Incomplete forever: refill made no progress.
                if let Err(PcapError::Incomplete(_)) = reader.next() {
                    panic!("{} ends with an incomplete block", path.display());
                }
            }
            Err(e) => panic!("{} is not valid pcapng: {e:?}", path.display()),
        }
    }
    out
}

/// The bytes one stream socket sent, reassembled by TCP sequence number. Panics on
/// overlapping or inconsistent packets; returns the reassembled bytes and the byte ranges that
/// were sent but not captured (as `(offset, len)`), relative to the first packet.
#[must_use]
pub fn tcp_stream(packets: &[Pkt], ino: u64) -> (Vec<u8>, Vec<(u64, u64)>) {
    let mut segs: Vec<&Pkt> = packets
        .iter()
        .filter(|p| p.is_tcp() && p.src() == ino)
        .collect();
    segs.sort_by_key(|p| p.seq());
    let Some(first) = segs.first() else {
        return (Vec::new(), Vec::new());
    };
    let base = first.seq();
    let mut out = Vec::new();
    let mut holes = Vec::new();
    let mut next = 0u64;
    for p in segs {
        let off = u64::from(p.seq().wrapping_sub(base));
        assert!(
            off >= next,
            "packets overlap at offset {off} of socket {ino}"
        );
        let mut hole = |start: u64, len: u64| match holes.last_mut() {
            Some((s, l)) if *s + *l == start => *l += len,
            _ => holes.push((start, len)),
        };
        if off > next {
            hole(next, off - next);
            out.resize(off as usize, 0);
        }
        out.extend_from_slice(p.payload());
        if p.payload().len() < p.payload_len() {
            hole(
                off + p.payload().len() as u64,
                (p.payload_len() - p.payload().len()) as u64,
            );
            out.resize(out.len() + p.payload_len() - p.payload().len(), 0);
        }
        next = off + p.payload_len() as u64;
    }
    (out, holes)
}

/// The datagrams one socket sent, in order.
#[must_use]
pub fn datagrams(packets: &[Pkt], ino: u64) -> Vec<Vec<u8>> {
    packets
        .iter()
        .filter(|p| !p.is_tcp() && p.src() == ino)
        .map(|p| p.payload().to_vec())
        .collect()
}

/// What tshark reads from a capture for one socket: `(tcp.seq_raw, payload)` or
/// `(0, udp payload)` per packet, in file order.
#[must_use]
pub fn tshark_payloads(path: &Path, packets: &[Pkt], ino: u64) -> Vec<(u32, Vec<u8>)> {
    let filter = format!("ipv6.src == {}", address(packets, ino));
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-Y",
            &filter,
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "tcp.seq_raw",
            "-e",
            "tcp.payload",
            "-e",
            "udp.payload",
        ])
        .stderr(Stdio::null())
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed on {}", path.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let seq = f[0].parse().unwrap_or(0);
            let hex = if f[1].is_empty() {
                f.get(2).copied().unwrap_or("")
            } else {
                f[1]
            };
            (seq, unhex(hex))
        })
        .collect()
}

/// The stream tshark's "Follow TCP Stream" shows for the conversation `a` <-> `b`:
/// (bytes a sent, bytes b sent).
#[must_use]
pub fn tshark_follow(path: &Path, packets: &[Pkt], a: u64, b: u64) -> (Vec<u8>, Vec<u8>) {
    let (addr_a, addr_b) = (address(packets, a), address(packets, b));
    // Find the stream index of the conversation.
    let filter = format!("ipv6.addr == {addr_a} && ipv6.addr == {addr_b}");
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-Y", &filter, "-T", "fields", "-e", "tcp.stream"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let stream = text
        .lines()
        .next()
        .expect("conversation in capture")
        .trim()
        .to_string();
    let out = Command::new("tshark")
        .args(["-n", "-q", "-r"])
        .arg(path)
        .args(["-z", &format!("follow,tcp,raw,{stream}")])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let node0 = text
        .lines()
        .find_map(|l| l.strip_prefix("Node 0: "))
        .unwrap()
        .to_string();
    let a_is_node0 = node0.contains(&format!("[{addr_a}]"));
    let (mut from_node0, mut from_node1) = (Vec::new(), Vec::new());
    let mut body = false;
    for l in text.lines() {
        if l.starts_with("Node 1:") {
            body = true;
            continue;
        }
        if !body || l.starts_with("====") {
            continue;
        }
        // Node 1's data is indented with a tab.
        match l.strip_prefix('\t') {
            Some(h) => from_node1.extend(unhex(h)),
            None => from_node0.extend(unhex(l)),
        }
    }
    if a_is_node0 {
        (from_node0, from_node1)
    } else {
        (from_node1, from_node0)
    }
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Counts of each `key=value` of packets' comments, for assertions about metadata.
#[must_use]
pub fn meta_values<'a>(packets: &'a [Pkt], key: &str) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for p in packets {
        if let Some(v) = p.meta(key) {
            *m.entry(v).or_insert(0) += 1;
        }
    }
    m
}

/// Deterministic test bytes: `len` bytes from a seed, so every message is distinct.
#[must_use]
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    #[must_use]
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("udstrace-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Our own pid, as udstrace's `-p` argument.
#[must_use]
pub fn own_pid() -> String {
    std::process::id().to_string()
}
