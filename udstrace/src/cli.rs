//! Command line: tcpdump's habits for Unix sockets.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    backend::BackendKind,
    capture::{self, CaptureOptions},
    decode::Decoders,
    error::{one_line, Error},
    extcap,
    filter::{parse_type, Filter},
    reader,
    text::PayloadStyle,
    tracer::{Tracer, TracerConfig},
};

/// Payload bytes kept per message unless `-s` says otherwise.
pub const DEFAULT_SNAPLEN: u32 = 4 << 20;
/// Ring buffer size unless `-B` says otherwise, in KiB.
pub const DEFAULT_BUFFER_KIB: u32 = 16 << 10;

/// tcpdump for Unix domain sockets: captures what processes send over AF_UNIX sockets,
/// systemwide or for chosen processes, as text or as pcapng for Wireshark.
#[derive(Debug, Parser)]
#[allow(clippy::struct_excessive_bools, reason = "command-line flags")]
#[command(
    name = "udstrace",
    version,
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Capture only these processes. Repeatable; one value may hold a list separated by
    /// spaces or commas, so `-p "$(pidof postgres)"` works.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub pids: Vec<String>,

    /// Write packets as pcapng to FILE (`-` for standard output) instead of printing them.
    /// The file is created readable by its owner only.
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE",
        conflicts_with = "read"
    )]
    pub write: Option<PathBuf>,

    /// Read packets from a pcapng file written by udstrace and print them.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Option<PathBuf>,

    /// Exit after COUNT packets.
    #[arg(short = 'c', long = "count", value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Keep at most SNAPLEN payload bytes of each message (0: the default, 4 MiB). A cut
    /// packet keeps its original length.
    #[arg(short = 's', long = "snaplen", value_name = "SNAPLEN")]
    pub snaplen: Option<u32>,

    /// Kernel buffer size in KiB (rounded up to a power of two).
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB", default_value_t = DEFAULT_BUFFER_KIB,
          value_parser = clap::value_parser!(u32).range(64..=(4 << 20)))]
    pub buffer_kib: u32,

    /// How to attach to the kernel: auto picks the first that works on this kernel.
    #[arg(long, value_name = "auto|fentry|kprobe|tracepoint", default_value = "auto",
          env = "UDSTRACE_BACKEND", value_parser = parse_backend)]
    pub backend: BackendChoice,

    /// With -p: capture the children those processes fork from now on too (and theirs).
    #[arg(long)]
    pub follow: bool,

    /// Capture receives too: what each process reads from Unix sockets, as inbound packets
    /// (the filters then select the reading process).
    #[arg(long)]
    pub recv: bool,

    /// Capture only processes with this command name (repeatable; checked in the kernel).
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,

    /// Capture only processes running as this user: a name or a number (repeatable; lists
    /// allowed; checked in the kernel).
    #[arg(long = "uid", value_name = "USER")]
    pub uids: Vec<String>,

    /// Capture only sockets with this name at either end: a path, `@name` for an abstract
    /// socket, or a glob with `*` and `?` (repeatable).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,

    /// Capture only sockets of this type: stream, dgram or seqpacket.
    #[arg(long = "type", value_name = "TYPE")]
    pub sock_type: Option<String>,

    /// Tell Wireshark that sockets named PATH (a path, `@name` or glob) speak PROTOCOL: http,
    /// pgsql, x11, or a TCP/UDP port number. PostgreSQL, X11 and Docker-style HTTP sockets
    /// are known without it.
    #[arg(long = "decode", value_name = "PATH=PROTOCOL")]
    pub decode: Vec<String>,

    #[command(flatten)]
    pub extcap: ExtcapArgs,

    /// Print each packet's payload in hex and ASCII.
    #[arg(short = 'X', conflicts_with = "ascii")]
    pub hex: bool,

    /// Print each packet's payload in ASCII.
    #[arg(short = 'A')]
    pub ascii: bool,

    /// Print capture statistics on stderr every second: packets, bytes, losses, and how full
    /// the kernel buffer got.
    #[arg(long)]
    pub stats: bool,

    /// Say more: which backend and why, and full kernel error messages.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// What Wireshark passes to an extcap program (hidden from `--help`).
#[derive(Debug, Default, clap::Args)]
#[allow(clippy::struct_excessive_bools, reason = "the extcap protocol's flags")]
pub struct ExtcapArgs {
    #[arg(long, hide = true)]
    pub extcap_interfaces: bool,
    #[arg(long, hide = true)]
    pub extcap_interface: Option<String>,
    #[arg(long, hide = true)]
    pub extcap_dlts: bool,
    #[arg(long, hide = true)]
    pub extcap_config: bool,
    #[arg(long, hide = true)]
    pub capture: bool,
    #[arg(long, hide = true)]
    pub fifo: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub extcap_capture_filter: Option<String>,
    #[arg(long, hide = true)]
    pub extcap_version: Option<String>,
    #[arg(long, hide = true)]
    pub extcap_control_in: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub extcap_control_out: Option<PathBuf>,
}

/// Commands besides capturing.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every Unix socket: type, state, inode, peer inode, name, and the processes
    /// (comm[pid]:fd) holding each end, like `ss -xp` joined with lsof.
    Ls {
        /// One JSON array of objects instead of the table.
        #[arg(long)]
        json: bool,
        /// Only sockets held by these processes (lists allowed, as for capture).
        #[arg(short = 'p', long = "pid", value_name = "PID")]
        pids: Vec<String>,
        /// Only sockets held by processes with this command name.
        #[arg(long = "comm", value_name = "NAME")]
        comms: Vec<String>,
        /// Only sockets with this name at either end (path, `@name`, glob).
        #[arg(long = "path", value_name = "PATH")]
        paths: Vec<String>,
        /// Only sockets of this type.
        #[arg(long = "type", value_name = "TYPE")]
        sock_type: Option<String>,
    },
    /// Try every attach backend on this kernel (load, attach, detach) and say which work:
    /// one line per backend, `NAME<TAB>ok|unsupported|error<TAB>why`.
    Backends,
    /// Wireshark integration.
    Extcap {
        #[command(subcommand)]
        action: ExtcapAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExtcapAction {
    /// Make udstrace a capture interface of Wireshark and tshark, and install its Lua plugin
    /// (fields udstrace.pid, udstrace.comm, ...): in your personal Wireshark folders, or with
    /// --global in the system's.
    Install {
        #[arg(long)]
        global: bool,
    },
}

/// `--backend`: one backend, or `None` for auto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendChoice(pub Option<BackendKind>);

fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    if s == "auto" {
        Ok(BackendChoice(None))
    } else {
        s.parse()
            .map(|k| BackendChoice(Some(k)))
            .map_err(|e| format!("{e} (expected auto, tracepoint, fentry or kprobe)"))
    }
}

/// The user ids of every `--uid` value: numbers, or names from the user database; lists
/// separated by spaces or commas.
pub fn parse_uids(values: &[String]) -> Result<Vec<u32>, String> {
    let mut uids = Vec::new();
    for word in values
        .iter()
        .flat_map(|v| v.split([' ', ',']))
        .filter(|w| !w.is_empty())
    {
        let uid = match word.parse::<u32>() {
            Ok(uid) => uid,
            Err(_) => user_id(word).ok_or_else(|| format!("no such user: {word}"))?,
        };
        uids.push(uid);
    }
    Ok(uids)
}

/// The uid of user `name` (getpwnam).
fn user_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam with a NUL-terminated name; the result is read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    // SAFETY: a non-null result points at a valid passwd record.
    (!pw.is_null()).then(|| unsafe { (*pw).pw_uid })
}

/// The pids of every `-p` value.
pub fn parse_pids(values: &[String]) -> Result<Vec<u32>, String> {
    let mut pids = Vec::new();
    for v in values {
        for word in v
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            match word.parse::<u32>() {
                Ok(pid) if pid > 0 => pids.push(pid),
                _ => return Err(format!("invalid process id `{word}`")),
            }
        }
    }
    if pids.is_empty() && !values.is_empty() {
        return Err("-p was given no process id".into());
    }
    Ok(pids)
}

impl Args {
    fn style(&self) -> PayloadStyle {
        if self.hex {
            PayloadStyle::HexAscii
        } else if self.ascii {
            PayloadStyle::Ascii
        } else {
            PayloadStyle::None
        }
    }
}

/// Runs udstrace with the process's arguments; prints errors as one line.
#[must_use]
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("udstrace: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let verbose = args.verbose;
    let fifo = args
        .extcap
        .capture
        .then(|| args.extcap.fifo.clone())
        .flatten();
    let result = run(args);
    if result.is_err() {
        if let Some(fifo) = &fifo {
            extcap::release_fifo(fifo);
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("udstrace: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Error(e)) => {
            match e.kernel_log() {
                Some(log) if verbose => eprintln!("udstrace: {}\n{log}", one_line(&e)),
                Some(_) => eprintln!(
                    "udstrace: {} (--verbose shows the kernel's full answer)",
                    one_line(&e)
                ),
                None => eprintln!("udstrace: {}", one_line(&e)),
            }
            ExitCode::FAILURE
        }
    }
}

/// Wireshark's questions (`--extcap-interfaces`, `--extcap-dlts`, `--extcap-config`);
/// returns whether one was answered.
fn extcap_query(ex: &ExtcapArgs) -> Result<bool, Failure> {
    let mut out = std::io::stdout();
    if ex.extcap_interfaces {
        extcap::interfaces(&mut out).map_err(stdout_error)?;
        return Ok(true);
    }
    if ex
        .extcap_interface
        .as_deref()
        .is_some_and(|i| i != extcap::INTERFACE)
    {
        return Err(Failure::Usage(format!(
            "unknown extcap interface `{}`",
            ex.extcap_interface.as_deref().unwrap_or("")
        )));
    }
    if ex.extcap_dlts {
        extcap::dlts(&mut out).map_err(stdout_error)?;
        return Ok(true);
    }
    if ex.extcap_config {
        extcap::config(&mut out).map_err(stdout_error)?;
        return Ok(true);
    }
    Ok(false)
}

/// `udstrace ls`.
fn ls(
    json: bool,
    pids: &[String],
    comms: Vec<String>,
    paths: Vec<String>,
    sock_type: Option<&str>,
) -> Result<(), Failure> {
    use std::io::Write as _;
    let filter = crate::ls::LsFilter {
        paths: expand_paths(paths)?,
        sock_type: sock_type
            .map(parse_type)
            .transpose()
            .map_err(Failure::Usage)?,
        pids: parse_pids(pids).map_err(Failure::Usage)?,
        comms,
    };
    let text = crate::ls::render(&filter, json).map_err(|e| {
        Failure::Error(Error::Input {
            path: "sock_diag".into(),
            reason: e.to_string(),
        })
    })?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(stdout_error)
}

fn backends() -> Result<(), Failure> {
    use std::io::Write as _;
    // Every program a capture may use, the receive side's included.
    let config = TracerConfig {
        recv: true,
        ..TracerConfig::new(1 << 20, DEFAULT_SNAPLEN)
    };
    let mut text = String::new();
    for status in Tracer::probe_backends(&config)? {
        let _ = writeln!(
            text,
            "{}\t{}\t{}",
            status.kind,
            status.state.name(),
            status.detail
        );
    }
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(stdout_error)
}

fn stdout_error(source: std::io::Error) -> Failure {
    Failure::Error(Error::Output {
        path: "standard output".into(),
        source,
    })
}

enum Failure {
    Usage(String),
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

fn run(mut args: Args) -> Result<(), Failure> {
    match args.command.take() {
        Some(Command::Extcap {
            action: ExtcapAction::Install { global },
        }) => {
            for line in extcap::install(global)? {
                println!("installed {line}");
            }
            return Ok(());
        }
        Some(Command::Ls {
            json,
            pids,
            comms,
            paths,
            sock_type,
        }) => return ls(json, &pids, comms, paths, sock_type.as_deref()),
        Some(Command::Backends) => return backends(),
        None => {}
    }
    if extcap_query(&args.extcap)? {
        return Ok(());
    }
    let ex = &args.extcap;
    if ex.capture {
        // Wireshark passes empty option values as empty strings.
        args.pids.retain(|p| !p.trim().is_empty());
        args.comms.retain(|c| !c.is_empty());
        args.uids.retain(|u| !u.trim().is_empty());
        args.paths.retain(|p| !p.is_empty());
        args.decode.retain(|d| !d.is_empty());
        args.sock_type = args.sock_type.filter(|t| !t.is_empty());
        args.write = Some(
            ex.fifo
                .clone()
                .ok_or_else(|| Failure::Usage("--capture needs --fifo".into()))?,
        );
    } else if ex.extcap_capture_filter.is_some() {
        // Wireshark validating a capture filter: udstrace takes none.
        return Err(Failure::Usage(
            "udstrace takes no capture filter; use the interface's options".into(),
        ));
    }
    let style = args.style();
    if let Some(path) = &args.read {
        reader::read(path, style, args.count)?;
        return Ok(());
    }
    let pids = parse_pids(&args.pids).map_err(Failure::Usage)?;
    let snaplen = match args.snaplen {
        None | Some(0) => DEFAULT_SNAPLEN,
        Some(s) => s,
    };
    let ring_bytes = args.buffer_kib.next_power_of_two().saturating_mul(1024);
    if args.follow && pids.is_empty() {
        return Err(Failure::Usage("--follow needs -p".into()));
    }
    let uids = parse_uids(&args.uids).map_err(Failure::Usage)?;
    let sock_type = args
        .sock_type
        .as_deref()
        .map(parse_type)
        .transpose()
        .map_err(Failure::Usage)?;
    let tracer = TracerConfig {
        backend: args.backend.0,
        pids,
        comms: args.comms.clone(),
        uids,
        sock_type,
        follow: args.follow,
        recv: args.recv,
        ..TracerConfig::new(ring_bytes, snaplen)
    };
    let filter = Filter {
        comms: args.comms,
        paths: expand_paths(args.paths)?,
        sock_type,
    };
    let decoders = Decoders::new(&args.decode).map_err(Failure::Usage)?;
    let opts = CaptureOptions {
        tracer,
        write: args.write,
        count: args.count,
        style,
        verbose: args.verbose,
        filter,
        decoders,
        stats: args.stats,
        ring_bytes,
    };
    report(&capture::run(&opts)?);
    Ok(())
}

/// `--path` values as the filters take them. A literal path must be a socket; the names that
/// sockets bound to that same file were given in their own mount namespaces are added (a
/// container's `/run/app.sock`, a service's private `/tmp`), so that the host's path to it
/// finds them. `@abstract` names and globs are kept as they are.
fn expand_paths(paths: Vec<String>) -> Result<Vec<String>, Failure> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        if !p.starts_with('@') && !p.contains(['*', '?']) {
            let names = crate::sockets::names_of_socket_file(std::path::Path::new(&p))
                .map_err(Failure::Usage)?;
            for name in names {
                let name = String::from_utf8_lossy(&name).into_owned();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The closing line of a capture, as tcpdump's.
fn report(summary: &capture::Summary) {
    // As in the statistics block: lost segments and lost calls together.
    let mut line = format!(
        "{} packets captured, {} lost",
        summary.packets,
        summary.lost_segments + summary.missed_returns
    );
    if summary.lost_bytes != 0 {
        let _ = write!(line, " ({} bytes)", summary.lost_bytes);
    }
    if summary.missed_returns != 0 {
        let _ = write!(
            line,
            ", {} of them whole calls whose return the kernel did not report (too many blocked \
             at once)",
            summary.missed_returns
        );
    }
    if summary.malformed != 0 {
        let _ = write!(line, ", {} malformed records skipped", summary.malformed);
    }
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_lists() {
        assert_eq!(
            parse_pids(&["1 2,3".into(), "4".into()]).unwrap(),
            vec![1, 2, 3, 4]
        );
        assert!(parse_pids(&["12x".into()]).is_err());
        assert!(parse_pids(&["0".into()]).is_err());
        assert!(parse_pids(&[" ".into()]).is_err());
        assert_eq!(parse_pids(&[]).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn args_parse_like_tcpdump() {
        let a = Args::try_parse_from([
            "udstrace",
            "-p",
            "1",
            "-w",
            "-",
            "-c",
            "5",
            "-s",
            "100",
            "--backend",
            "tracepoint",
        ])
        .unwrap();
        assert_eq!(a.count, Some(5));
        assert_eq!(a.snaplen, Some(100));
        assert_eq!(a.backend, BackendChoice(Some(BackendKind::Tracepoint)));
        assert!(Args::try_parse_from(["udstrace", "--backend", "nope"]).is_err());
        assert!(Args::try_parse_from(["udstrace", "-c", "0"]).is_err());
        assert!(Args::try_parse_from(["udstrace", "-r", "a", "-w", "b"]).is_err());
    }
}
