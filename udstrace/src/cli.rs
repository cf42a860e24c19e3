//! Command line: tcpdump's habits for Unix sockets.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use clap::Parser;

use crate::{
    backend::BackendKind,
    capture::{self, CaptureOptions},
    error::{one_line, Error},
    reader,
    text::PayloadStyle,
    tracer::TracerConfig,
};

/// Payload bytes kept per message unless `-s` says otherwise.
pub const DEFAULT_SNAPLEN: u32 = 4 << 20;
/// Ring buffer size unless `-B` says otherwise, in KiB.
pub const DEFAULT_BUFFER_KIB: u32 = 16 << 10;

/// tcpdump for Unix domain sockets: captures what processes send over AF_UNIX sockets,
/// systemwide or for chosen processes, as text or as pcapng for Wireshark.
#[derive(Debug, Parser)]
#[command(name = "udstrace", version, about, max_term_width = 100)]
pub struct Args {
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
    #[arg(long, value_name = "auto|tracepoint|fentry|kprobe", default_value = "auto", value_parser = parse_backend)]
    pub backend: BackendChoice,

    /// Print each packet's payload in hex and ASCII.
    #[arg(short = 'X', conflicts_with = "ascii")]
    pub hex: bool,

    /// Print each packet's payload in ASCII.
    #[arg(short = 'A')]
    pub ascii: bool,

    /// Say more: which backend and why, and full kernel error messages.
    #[arg(short = 'v', long)]
    pub verbose: bool,
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
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("udstrace: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Error(e)) => {
            eprintln!("udstrace: {}", one_line(&e));
            if let Some(log) = e.kernel_log() {
                if verbose {
                    eprintln!("{log}");
                } else {
                    eprintln!("udstrace: run with --verbose for the kernel's full answer");
                }
            }
            ExitCode::FAILURE
        }
    }
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

fn run(args: Args) -> Result<(), Failure> {
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
    let opts = CaptureOptions {
        tracer: TracerConfig {
            backend: args.backend.0,
            snaplen,
            pids,
            ring_bytes,
        },
        write: args.write,
        count: args.count,
        style,
        verbose: args.verbose,
    };
    let summary = capture::run(&opts)?;
    let mut line = format!(
        "{} packets captured, {} lost",
        summary.packets, summary.lost_segments
    );
    if summary.lost_bytes != 0 {
        let _ = write!(line, " ({} bytes)", summary.lost_bytes);
    }
    if summary.malformed != 0 {
        let _ = write!(line, ", {} malformed records skipped", summary.malformed);
    }
    eprintln!("{line}");
    Ok(())
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
