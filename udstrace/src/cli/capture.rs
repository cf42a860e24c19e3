//! The capture command: the options a capture runs with, from the arguments, and its closing
//! line (`N packets captured, N lost`).

use std::fmt::Write as _;

use super::{
    args::{parse_pids, parse_uids, Args, DEFAULT_SNAPLEN},
    Failure,
};
use crate::{
    capture::{self, filter::parse_type, filter::Filter, CaptureOptions},
    output::{ports::Ports, reader},
    tracer::TracerConfig,
};

/// Runs a capture, or with `-r` prints a capture file.
pub(super) fn run(args: Args) -> Result<(), Failure> {
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
    let ports = Ports::new(&args.decode).map_err(Failure::Usage)?;
    if let Some(root) = &args.host_root {
        if !root.is_dir() {
            return Err(Failure::Usage(format!(
                "--host-root {}: not a directory",
                root.display()
            )));
        }
    }
    let opts = CaptureOptions {
        tracer,
        write: args.write,
        count: args.count,
        style,
        verbose: args.verbose,
        filter,
        ports,
        stats: args.stats,
        ring_bytes,
        host_root: args.host_root,
    };
    report(&capture::run(&opts)?);
    Ok(())
}

/// `--path` values as the filters take them. A literal path must be a socket; the names that
/// sockets bound to that same file were given in their own mount namespaces are added (a
/// container's `/run/app.sock`, a service's private `/tmp`), so that the host's path to it
/// finds them. `@abstract` names and globs are kept as they are.
pub(super) fn expand_paths(paths: Vec<String>) -> Result<Vec<String>, Failure> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
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
