//! The command line's words: clap's types (their doc comments are `--help`) and the parsers
//! of values that need more than clap (`-p` lists, `--uid` names, `--backend auto`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{output::text::PayloadStyle, tracer::backend::BackendKind};

/// Payload bytes kept per message unless `-s` says otherwise.
pub(crate) const DEFAULT_SNAPLEN: u32 = 4 << 20;
/// Ring buffer size unless `-B` says otherwise, in KiB.
pub(crate) const DEFAULT_BUFFER_KIB: u32 = 32 << 10;

/// `--version`: the package's version and the source revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("UDSTRACE_REVISION"),
    ")"
);

/// tcpdump for Unix domain sockets: captures what processes send over AF_UNIX sockets,
/// systemwide or for chosen processes, as text or as pcapng for Wireshark.
#[derive(Debug, Parser)]
#[allow(clippy::struct_excessive_bools, reason = "command-line flags")]
#[command(
    name = "udstrace",
    version = VERSION,
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Capture only these processes. Repeatable; one value may hold a list separated by
    /// spaces or commas, so `-p "$(pidof postgres)"` works.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pub(crate) pids: Vec<String>,

    /// Write packets as pcapng to FILE (`-` for standard output) instead of printing them.
    /// The file is created readable by its owner only; a symbolic link, or a file or FIFO of
    /// another user, at FILE is refused.
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE",
        conflicts_with = "read"
    )]
    pub(crate) write: Option<PathBuf>,

    /// Read packets from pcapng files written by udstrace (`-` for standard input) and print
    /// them: several files (`-r A -r B`, or `-r A B C`, a rotated set) are read in the order
    /// given.
    #[arg(short = 'r', long = "read", value_name = "FILE", num_args = 1..)]
    pub(crate) read: Vec<PathBuf>,

    /// With -w FILE: before each packet, start a new file if the current one holds more than
    /// SIZE million bytes (a suffix k, m or g: KiB, MiB, GiB): FILE, FILE1, FILE2, ...
    #[arg(short = 'C', long = "file-size", value_name = "SIZE", value_parser = parse_size,
          conflicts_with = "read")]
    pub(crate) file_size: Option<u64>,

    /// With -w FILE: start a new file every SECONDS; FILE is a strftime pattern
    /// (`cap-%Y%m%d-%H%M%S.pcapng`) filled in with the local time each file begins.
    #[arg(short = 'G', long = "rotate-seconds", value_name = "SECONDS",
          value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "read")]
    pub(crate) rotate_seconds: Option<u32>,

    /// With -C: keep a ring of COUNT files (FILE0, FILE1, ..., each replaced in turn); with -G
    /// alone: stop after COUNT files.
    #[arg(short = 'W', long = "file-count", value_name = "COUNT",
          value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "read")]
    pub(crate) file_count: Option<u32>,

    /// With -C or -G: run `COMMAND FILE` on each file once it is complete (no shell; not
    /// waited for), e.g. `-z gzip`.
    #[arg(
        short = 'z',
        long = "postrotate-command",
        value_name = "COMMAND",
        conflicts_with = "read"
    )]
    pub(crate) postrotate: Option<std::ffi::OsString>,

    /// Once the kernel programs are attached, run as USER (a name or number): its uid, gid and
    /// groups, with no capability left; files are then written as USER (with -C/-G/-z too),
    /// in directories USER may write to.
    #[arg(
        short = 'Z',
        long = "relinquish-privileges",
        value_name = "USER",
        conflicts_with = "read"
    )]
    pub(crate) user: Option<String>,

    /// Exit after COUNT packets.
    #[arg(short = 'c', long = "count", value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,

    /// Keep at most SNAPLEN payload bytes of each message (0: the default, 4 MiB). A cut
    /// packet keeps its original length.
    #[arg(short = 's', long = "snaplen", value_name = "SNAPLEN")]
    pub(crate) snaplen: Option<u32>,

    /// Kernel buffer size in KiB (rounded up to a power of two).
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB", default_value_t = DEFAULT_BUFFER_KIB,
          value_parser = clap::value_parser!(u32).range(64..=(4 << 20)))]
    pub(crate) buffer_kib: u32,

    /// How to attach to the kernel: auto picks the first that works on this kernel.
    #[arg(long, value_name = "auto|fentry|kprobe|tracepoint", default_value = "auto",
          env = "UDSTRACE_BACKEND", value_parser = parse_backend)]
    pub(crate) backend: BackendChoice,

    /// With -p: capture the children those processes fork from now on too (and theirs).
    #[arg(long)]
    pub(crate) follow: bool,

    /// Capture receives too: what each process reads from Unix sockets, as inbound packets
    /// (the filters then select the reading process).
    #[arg(long)]
    pub(crate) recv: bool,

    /// Capture only processes with this command name (repeatable; checked in the kernel).
    #[arg(long = "comm", value_name = "NAME")]
    pub(crate) comms: Vec<String>,

    /// Capture only processes running as this user: a name or a number (repeatable; lists
    /// allowed; checked in the kernel).
    #[arg(long = "uid", value_name = "USER")]
    pub(crate) uids: Vec<String>,

    /// Capture only sockets with this name at either end: a path, `@name` for an abstract
    /// socket, or a glob with `*` and `?` (repeatable). A path is also the socket file itself,
    /// whatever name its server bound it with (a container's own path to it); one that does
    /// not exist yet is waited for.
    #[arg(long = "path", value_name = "PATH")]
    pub(crate) paths: Vec<String>,

    /// Capture only processes in this container: its name, id, or a unique id prefix of at
    /// least 4 digits (repeatable; checked in the kernel). One that is not running yet is
    /// waited for.
    #[arg(long = "container", value_name = "NAME|ID")]
    pub(crate) containers: Vec<String>,

    /// Capture only processes in the containers of this Kubernetes pod (repeatable; checked in
    /// the kernel).
    #[arg(long = "pod", value_name = "NAMESPACE/NAME")]
    pub(crate) pods: Vec<String>,

    /// Capture only sockets of this type: stream, dgram or seqpacket.
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) sock_type: Option<String>,

    /// Tell Wireshark that sockets named PATH (a path, `@name` or glob) speak PROTOCOL: http,
    /// pgsql, x11, redis, mysql (mariadb), memcached, http2 (grpc), dbus, or a TCP/UDP port
    /// number. The usual sockets of these are known without it (README: Protocols). `dbus`:
    /// each D-Bus message also as a packet of a D-Bus interface (bus sockets, and streams seen
    /// from their authentication, are known without it).
    #[arg(long = "decode", value_name = "PATH=PROTOCOL")]
    pub(crate) decode: Vec<String>,

    /// Where the host's file system is seen when udstrace runs in a container (`/host` when
    /// kubectl debugs a node): containers are named from the runtimes' state files under DIR,
    /// and the cgroup hierarchy is looked for there too.
    #[arg(long, value_name = "DIR")]
    pub(crate) host_root: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) extcap: ExtcapArgs,

    /// Print each packet's payload in hex and ASCII.
    #[arg(short = 'X', conflicts_with = "ascii")]
    pub(crate) hex: bool,

    /// Print each packet's payload in ASCII.
    #[arg(short = 'A')]
    pub(crate) ascii: bool,

    /// Print capture statistics on stderr every second: packets, bytes, losses, and how full
    /// the kernel buffer got.
    #[arg(long)]
    pub(crate) stats: bool,

    /// Say more: which backend and why, full kernel error messages, and how long each step of
    /// the start took (also with UDSTRACE_TIMING=1).
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
}

/// What Wireshark passes to an extcap program (hidden from `--help`).
#[derive(Debug, Default, clap::Args)]
#[allow(clippy::struct_excessive_bools, reason = "the extcap protocol's flags")]
pub(crate) struct ExtcapArgs {
    #[arg(long, hide = true)]
    pub(crate) extcap_interfaces: bool,
    #[arg(long, hide = true)]
    pub(crate) extcap_interface: Option<String>,
    #[arg(long, hide = true)]
    pub(crate) extcap_dlts: bool,
    #[arg(long, hide = true)]
    pub(crate) extcap_config: bool,
    #[arg(long, hide = true)]
    pub(crate) capture: bool,
    #[arg(long, hide = true)]
    pub(crate) fifo: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub(crate) extcap_capture_filter: Option<String>,
    #[arg(long, hide = true)]
    pub(crate) extcap_version: Option<String>,
    #[arg(long, hide = true)]
    pub(crate) extcap_control_in: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub(crate) extcap_control_out: Option<PathBuf>,
}

/// Commands besides capturing.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Attach a reference program instead of the capture's, and read its records until
    /// stopped: what `cargo xtask bench` measures the capture against (`empty`: a program
    /// that returns at once; `floor`: one that records only the time and the payload).
    #[command(hide = true)]
    Reference {
        #[arg(value_name = "empty|floor")]
        program: String,
    },
    /// Write the manual page and the shell completions (bash, zsh, fish) into DIR (for
    /// packages).
    #[command(hide = true)]
    Generate {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// The command line's definition (for the manual page and the completions).
pub(crate) fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExtcapAction {
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
pub(crate) struct BackendChoice(pub(crate) Option<BackendKind>);

pub(crate) fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    if s == "auto" {
        Ok(BackendChoice(None))
    } else {
        s.parse()
            .map(|k| BackendChoice(Some(k)))
            .map_err(|e| format!("{e} (expected auto, tracepoint, fentry or kprobe)"))
    }
}

/// `-C`: millions of bytes, or with a suffix k, m or g, KiB, MiB or GiB (as tcpdump).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1_000_000),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| {
            format!(
                "invalid file size `{s}` (a whole number of millions of bytes, or with k, m or g)"
            )
        })
}

/// The user ids of every `--uid` value: numbers, or names from the user database; lists
/// separated by spaces or commas.
pub(crate) fn parse_uids(values: &[String]) -> Result<Vec<u32>, String> {
    let mut uids = Vec::new();
    for word in values
        .iter()
        .flat_map(|v| v.split([' ', ',']))
        .filter(|w| !w.is_empty())
    {
        let uid = match word.parse::<u32>() {
            Ok(uid) => uid,
            Err(_) => crate::sys::user_id(word).ok_or_else(|| format!("no such user: {word}"))?,
        };
        uids.push(uid);
    }
    Ok(uids)
}

/// The pids of every `-p` value.
pub(crate) fn parse_pids(values: &[String]) -> Result<Vec<u32>, String> {
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
    pub(crate) fn style(&self) -> PayloadStyle {
        if self.hex {
            PayloadStyle::HexAscii
        } else if self.ascii {
            PayloadStyle::Ascii
        } else {
            PayloadStyle::None
        }
    }
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
        assert!(Args::try_parse_from(["udstrace", "-r", "a", "-C", "1"]).is_err());
        let a = Args::try_parse_from(["udstrace", "-r", "a", "b", "-r", "c", "-c", "2"]).unwrap();
        assert_eq!(a.read, ["a", "b", "c"].map(PathBuf::from));
        let a = Args::try_parse_from(["udstrace", "-w", "f", "-C", "2", "-W", "3", "-z", "gzip"])
            .unwrap();
        assert_eq!((a.file_size, a.file_count), (Some(2_000_000), Some(3)));
        assert!(Args::try_parse_from(["udstrace", "-w", "f", "-G", "0"]).is_err());
    }

    #[test]
    fn file_sizes() {
        assert_eq!(parse_size("1"), Ok(1_000_000));
        assert_eq!(parse_size("3k"), Ok(3072));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        for bad in ["0", "", "k", "-1", "1.5", "1x", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
