//! Everything that can stop udstrace, each with the one line the user sees.

use std::{io, path::PathBuf};

use crate::kernel::KernelError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("no capture backend works on kernel {release}: {reasons}")]
    NoBackend {
        release: String,
        reasons: String,
        log: String,
    },
    #[error("backend {backend} cannot be used on kernel {release}: {reason}")]
    BackendUnsupported {
        backend: &'static str,
        release: String,
        reason: String,
        log: String,
    },
    #[error("the kernel refused udstrace's programs: {0}")]
    Load(String),
    #[error("cannot attach {program}: {reason}")]
    Attach {
        program: &'static str,
        reason: String,
        log: String,
    },
    #[error("the kernel refuses {program}: {reason}")]
    Refused {
        program: &'static str,
        reason: String,
    },
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no usable map {0}")]
    MissingMap(&'static str),
    #[error("cannot add to the kernel's filter {map}: {reason}")]
    FilterMap { map: &'static str, reason: String },
    #[error(
        "--container and --pod need the cgroup2 hierarchy, and none is mounted whole here (in a \
         container: mount the host's /sys/fs/cgroup, or give --host-root)"
    )]
    NoCgroup2,
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    #[error("cannot write {}: {source}", path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("refusing to write {}: {reason}", path.display())]
    UnsafeOutput { path: PathBuf, reason: String },
    #[error("cannot read {}: {reason}", path.display())]
    Input { path: PathBuf, reason: String },
    #[error("reading the capture buffer: {0}")]
    Ring(io::Error),
    #[error("cannot install into Wireshark: {0}")]
    Install(String),
    #[error("cannot set up the signal handlers: {0}")]
    Signals(io::Error),
    #[error("cannot become user {user} (-Z): {source}")]
    BecomeUser { user: String, source: io::Error },
}

impl Error {
    /// An attach failure, described by the first line of the kernel's answer (a verifier log
    /// runs to thousands of lines; `--verbose` prints it).
    pub(crate) fn attach(program: &'static str, e: impl std::error::Error) -> Self {
        Self::Attach {
            program,
            reason: one_line(&e),
            log: full_chain(&e),
        }
    }

    /// The kernel's full answer (a verifier log), when there is one.
    #[must_use]
    pub(crate) fn kernel_log(&self) -> Option<&str> {
        match self {
            Self::Attach { log, .. }
            | Self::NoBackend { log, .. }
            | Self::BackendUnsupported { log, .. } => Some(log.as_str()).filter(|l| !l.is_empty()),
            _ => None,
        }
    }
}

impl Error {
    /// This error inside an `io::Error` (of the same kind), to travel where the output's
    /// errors do: a file of a rotated set names itself, not `-w`'s pattern.
    #[must_use]
    pub(crate) fn into_io(self) -> io::Error {
        let kind = match &self {
            Self::Output { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }

    /// What an output's `io::Error` says: the error it carries ([`Error::into_io`]), or a
    /// failure to write `path`.
    #[must_use]
    pub(crate) fn output(path: PathBuf, source: io::Error) -> Self {
        if !source
            .get_ref()
            .is_some_and(<dyn std::error::Error + Send + Sync>::is::<Self>)
        {
            return Self::Output { path, source };
        }
        match source
            .into_inner()
            .map(<dyn std::error::Error + Send + Sync>::downcast::<Self>)
        {
            Some(Ok(e)) => *e,
            _ => Self::Output {
                path,
                source: io::Error::other("an error that was lost"),
            },
        }
    }

    /// A copy of an output's `io::Error`, with the error it carries (the output thread keeps
    /// its error and hands each caller a copy).
    #[must_use]
    pub(crate) fn copy_io(e: &io::Error) -> io::Error {
        if let Some(code) = e.raw_os_error() {
            return io::Error::from_raw_os_error(code);
        }
        match e.get_ref().and_then(|inner| inner.downcast_ref::<Self>()) {
            Some(Self::Output { path, source }) => Self::Output {
                path: path.clone(),
                source: Self::copy_io(source),
            }
            .into_io(),
            Some(Self::UnsafeOutput { path, reason }) => Self::UnsafeOutput {
                path: path.clone(),
                reason: reason.clone(),
            }
            .into_io(),
            _ => io::Error::new(e.kind(), e.to_string()),
        }
    }
}

/// The error and its causes on one line, each cause's first line only.
pub(crate) fn one_line(e: &dyn std::error::Error) -> String {
    let mut out = first_line(&e.to_string()).to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        let line = first_line(&text);
        if !line.is_empty() && !out.contains(line) {
            out.push_str(": ");
            out.push_str(line);
        }
        source = s.source();
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// The full text of an error and its causes, for `--verbose`.
pub(crate) fn full_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str("\ncaused by: ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
