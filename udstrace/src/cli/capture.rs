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
        stop::OutputEnd,
        targets::Targets,
        CaptureOptions,
    },
    error::{one_line, Error},
    output::{
        dbus::BusNames,
        file::Destination,
        ports::Ports,
        reader,
        rotate::{self, Rotation},
    },
    proc::{
        container_filter::{ContainerFilter, Selector},
        path_filter::PathFilter,
    },
    tracer::TracerConfig,
};

/// Exit status of a capture stopped at once by a second signal (as a shell reports a process
/// killed by SIGINT).
const EXIT_ABANDONED: u8 = 130;

/// Runs a capture, or with `-r` prints a capture file.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    let style = args.style();
    if !args.read.is_empty() {
        if args.read.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(Failure::Usage("-r: empty path".into()));
        }
        reader::read(&args.read, style, args.count)?;
        return Ok(());
    }
    let write = match &args.write {
        None => None,
        Some(p) if p.as_os_str().is_empty() => return Err(Failure::Usage("-w: empty path".into())),
        Some(p) if args.extcap.capture => Some(Destination::ExtcapFifo(p.clone())),
        Some(p) if p == Path::new("-") => Some(Destination::Stdout),
        Some(p) => Some(Destination::File(p.clone())),
    };
    let rotation = rotation(&args, write.as_ref())?;
    // Said before anything is attached.
    let user = match args.user.as_deref() {
        None => None,
        Some(name) => Some(
            crate::sys::user(name)
                .ok_or_else(|| Failure::Usage(format!("-Z: no such user: {name}")))?,
        ),
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
    if let Some(root) = &args.host_root {
        if !root.is_dir() {
            return Err(Failure::Usage(format!(
                "--host-root {}: not a directory",
                root.display()
            )));
        }
    }
    let host_root = args.host_root.as_deref().unwrap_or(Path::new("/"));
    let containers = containers(&args.containers, &args.pods, host_root)?;
    let paths = PathFilter::new(&args.paths).map_err(Failure::Usage)?;
    for path in paths.waiting() {
        eprintln!("udstrace: waiting for {path} (no socket there yet)");
    }
    let in_kernel = paths.in_kernel();
    let tracer = TracerConfig {
        backend: args.backend.0,
        pids,
        comms: args.comms.clone(),
        uids,
        sock_type,
        follow: args.follow,
        recv: args.recv,
        cgroups: containers.as_ref().map(ContainerFilter::ids),
        paths: in_kernel.then(|| (paths.files(), paths.names())),
        ..TracerConfig::new(ring_bytes, snaplen)
    };
    let filter = Filter {
        comms: args.comms,
        paths: paths.patterns(),
        kernel_paths: in_kernel,
        sock_type,
    };
    let ports = Ports::new(&args.decode).map_err(Failure::Usage)?;
    let opts = CaptureOptions {
        tracer,
        write,
        rotation,
        count: args.count,
        style,
        verbose: args.verbose,
        filter,
        ports,
        dbus: BusNames::new(&args.decode),
        stats: args.stats,
        ring_bytes,
        targets: Targets::new(containers, paths),
        host_root: args.host_root,
        user,
    };
    let (summary, end) = capture::run(&opts)?;
    let failure = output_failure(end, opts.write.as_ref());
    report(&summary);
    failure.map_or(Ok(()), |code| Err(Failure::Exit(code)))
}

/// `-C`, `-G`, `-W` and `-z`: how `-w FILE` is rotated, if it is.
fn rotation(args: &Args, write: Option<&Destination>) -> Result<Option<Rotation>, Failure> {
    let rotation = Rotation {
        size: args.file_size,
        seconds: args.rotate_seconds,
        count: args.file_count,
        command: args.postrotate.clone(),
    };
    let option = match (rotation.size, rotation.seconds, &rotation.command) {
        (Some(_), _, _) => "-C",
        (None, Some(_), _) => "-G",
        (None, None, _) if rotation.count.is_some() => {
            return Err(Failure::Usage("-W needs -C or -G".into()))
        }
        (None, None, Some(_)) => return Err(Failure::Usage("-z needs -C or -G".into())),
        (None, None, None) => return Ok(None),
    };
    let pattern = match write {
        Some(Destination::File(p)) => p,
        Some(Destination::Stdout) => {
            return Err(Failure::Usage(format!(
                "{option} rotates files: it cannot rotate standard output (-w -)"
            )))
        }
        Some(Destination::ExtcapFifo(_)) => {
            return Err(Failure::Usage(format!(
                "{option} rotates files: Wireshark's capture cannot be rotated by udstrace"
            )))
        }
        None => return Err(Failure::Usage(format!("{option} needs -w FILE"))),
    };
    if let Some(command) = &rotation.command {
        if !rotate::runnable(command) {
            return Err(Failure::Usage(format!(
                "-z {}: no such program (a path, or a name in $PATH)",
                Path::new(command).display()
            )));
        }
    }
    // A name strftime cannot fill in is said now, not at the first file.
    rotation
        .name(pattern, 0, 0)
        .map_err(|reason| Failure::Usage(format!("-w {}: {reason}", pattern.display())))?;
    if rotation.seconds.is_some() && !pattern.as_os_str().as_encoded_bytes().contains(&b'%') {
        eprintln!(
            "udstrace: warning: -w {} has no time in it (%H, %M, %S, ...): each file of -G \
             replaces the one before",
            pattern.display()
        );
    }
    Ok(Some(rotation))
}

/// What became of the output at the end, said in one line when it did not take everything;
/// the exit code then.
fn output_failure(end: OutputEnd, write: Option<&Destination>) -> Option<u8> {
    let name = Destination::name_of(write);
    // The text view has no statistics block.
    let and_stats = if write.is_some() {
        " and the statistics block"
    } else {
        ""
    };
    match end {
        OutputEnd::Written => None,
        OutputEnd::Failed { error, unwritten } => {
            eprintln!(
                "udstrace: {}; {unwritten} packets were not written",
                one_line(&error)
            );
            Some(1)
        }
        OutputEnd::Blocked { unwritten, grace } => {
            eprintln!(
                "udstrace: {} took nothing for {} ms after the stop: gave up on it; {unwritten} \
                 packets{and_stats} were not written",
                name.display(),
                grace.as_millis()
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
    }
}

/// `--container` and `--pod`: the containers running now (their cgroups, for the kernel), or
/// `None` without those options. A value that names no container yet is waited for (one line
/// says so); an ambiguous id prefix is an error.
fn containers(
    names: &[String],
    pods: &[String],
    host_root: &Path,
) -> Result<Option<ContainerFilter>, Failure> {
    let mut selectors = Vec::new();
    for name in names {
        selectors.push(Selector::container(name).map_err(Failure::Usage)?);
    }
    for pod in pods {
        selectors.push(Selector::pod(pod).map_err(Failure::Usage)?);
    }
    if selectors.is_empty() {
        return Ok(None);
    }
    let mut filter = ContainerFilter::system(selectors, host_root);
    if !filter.has_cgroup2() {
        return Err(Failure::Error(Error::NoCgroup2));
    }
    let found = filter.refresh();
    if let Some((prefix, ids)) = found.ambiguous.first() {
        let ids: Vec<&str> = ids.iter().map(|id| id.get(..12).unwrap_or(id)).collect();
        return Err(Failure::Usage(format!(
            "container id prefix {prefix} is ambiguous: {}",
            ids.join(", ")
        )));
    }
    for what in filter.waiting() {
        eprintln!("udstrace: waiting for {what} (not running yet)");
    }
    Ok(Some(filter))
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
