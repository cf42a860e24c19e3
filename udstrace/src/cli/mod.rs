//! The command line: tcpdump's habits for Unix sockets. `main` parses the arguments and runs
//! one command: a capture (`capture.rs`, the default), `-r` (`output::reader`), `ls`,
//! `backends`, or Wireshark's extcap calls; every error ends as one line and an exit code
//! (0 done, 1 failed, 2 bad usage, 130 a capture stopped at once by a second signal).

use std::process::ExitCode;

use clap::Parser;

use crate::error::{one_line, Error};

pub(crate) mod args;
mod backends;
mod capture;
pub(crate) mod extcap;
mod generate;
pub(crate) mod ls;
mod reference;

use args::{Args, Command, ExtcapAction};

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
    crate::timing::init(verbose);
    let fifo = args
        .extcap
        .capture
        .then(|| args.extcap.fifo.clone())
        .flatten();
    let result = run(args);
    // A capture that ran has opened the pipe already (or found nobody reading it).
    if matches!(result, Err(Failure::Usage(_) | Failure::Error(_))) {
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
        Err(Failure::Exit(code)) => ExitCode::from(code),
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

pub(crate) fn stdout_error(source: std::io::Error) -> Failure {
    Failure::Error(Error::Output {
        path: "standard output".into(),
        source,
    })
}

pub(crate) enum Failure {
    Usage(String),
    Error(Error),
    /// Already said on stderr: exit with this status.
    Exit(u8),
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
        }) => return ls::run(json, &pids, comms, paths, sock_type.as_deref()),
        Some(Command::Backends) => return backends::run(),
        Some(Command::Reference { program }) => return reference::run(&program),
        Some(Command::Generate { dir }) => {
            for path in generate::write(&dir)? {
                println!("{}", path.display());
            }
            return Ok(());
        }
        None => {}
    }
    if extcap::query(&args.extcap)? {
        return Ok(());
    }
    let ex = &args.extcap;
    if ex.capture {
        // Wireshark passes empty option values as empty strings.
        args.pids.retain(|p| !p.trim().is_empty());
        args.comms.retain(|c| !c.is_empty());
        args.uids.retain(|u| !u.trim().is_empty());
        args.paths.retain(|p| !p.is_empty());
        args.containers.retain(|c| !c.is_empty());
        args.pods.retain(|p| !p.is_empty());
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
    capture::run(args)
}
