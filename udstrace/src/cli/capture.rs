//! The capture command: the options a capture runs with, from the arguments, and its closing
//! lines: how the output ended when it did not take everything, then
//! `N packets captured, N lost`.

use std::{fmt::Write as _, path::Path};

use super::{
    args::{parse_pids, parse_uids, Args, DEFAULT_SNAPLEN},
    Failure,
};
use crate::{
    capture::{
        self,
        filter::{parse_type, Filter},
        stop::{OutputEnd, OUTPUT_GRACE},
        CaptureOptions,
    },
    error::one_line,
    output::{file::Destination, ports::Ports, reader},
    tracer::TracerConfig,
};

/// Exit status of a capture stopped at once by a second signal (as a shell reports a process
/// killed by SIGINT).
const EXIT_ABANDONED: u8 = 130;

/// Runs a capture, or with `-r` prints a capture file.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    let style = args.style();
    if let Some(path) = &args.read {
        if path.as_os_str().is_empty() {
            return Err(Failure::Usage("-r: empty path".into()));
        }
        reader::read(path, style, args.count)?;
        return Ok(());
    }
    let write = match &args.write {
        None => None,
        Some(p) if p.as_os_str().is_empty() => return Err(Failure::Usage("-w: empty path".into())),
        Some(p) if args.extcap.capture => Some(Destination::ExtcapFifo(p.clone())),
        Some(p) if p == Path::new("-") => Some(Destination::Stdout),
        Some(p) => Some(Destination::File(p.clone())),
    };
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
    let ports = Ports::new(&args.decode).map_err(Failure::Usage)?;
    let opts = CaptureOptions {
        tracer,
        write,
        count: args.count,
        style,
        verbose: args.verbose,
        filter,
        ports,
        stats: args.stats,
        ring_bytes,
    };
    let (summary, end) = capture::run(&opts)?;
    let name = Destination::name_of(opts.write.as_ref());
    // The text view has no statistics block.
    let and_stats = if opts.write.is_some() {
        " and the statistics block"
    } else {
        ""
    };
    let failure = match end {
        OutputEnd::Written => None,
        OutputEnd::Failed { error, unwritten } => {
            eprintln!(
                "udstrace: {}; {unwritten} packets were not written",
                one_line(&error)
            );
            Some(1)
        }
        OutputEnd::Blocked { unwritten } => {
            eprintln!(
                "udstrace: {} took nothing for {} ms after the stop: gave up on it; {unwritten} \
                 packets{and_stats} were not written",
                name.display(),
                OUTPUT_GRACE.as_millis()
            );
            Some(1)
        }
        OutputEnd::Abandoned { unwritten } => {
            eprintln!(
                "udstrace: stopped at once by a second signal; {unwritten} packets{and_stats} \
                 were not written to {}",
                name.display()
            );
            Some(EXIT_ABANDONED)
        }
    };
    report(&summary);
    failure.map_or(Ok(()), |code| Err(Failure::Exit(code)))
}

/// `--path` values as the filters take them. A literal path must be a socket; the names that
/// sockets bound to that same file were given in their own mount namespaces are added (a
/// container's `/run/app.sock`, a service's private `/tmp`), so that the host's path to it
/// finds them. `@abstract` names and globs are kept as they are.
pub(super) fn expand_paths(paths: Vec<String>) -> Result<Vec<String>, Failure> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        if p.is_empty() {
            return Err(Failure::Usage(
                "--path is empty: give a socket's path, @name or a glob".into(),
            ));
        }
        if !p.starts_with('@') && !p.contains(['*', '?']) {
            let names = crate::proc::sockets::names_of_socket_file(std::path::Path::new(&p))
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
