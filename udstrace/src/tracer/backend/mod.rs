//! Attach backends: the ways of getting the kernel programs to run on every Unix socket send.
//!
//! Each backend is one implementation of [`AttachBackend`]. All of them feed the same
//! capture code (`udstrace-ebpf`) and so produce identical records; they differ
//! only in where they hook and in what each kernel allows. `--backend auto` takes the first
//! one, in order of preference, that this kernel supports and that attaches.

use std::{fmt, str::FromStr};

use aya::Ebpf;
use udstrace_common::maps;

pub(crate) use crate::kernel::hooks::SendFunctions;
use crate::{error::Error, kernel::KernelFacts, timing::Phase};

pub(crate) mod fentry;
pub(crate) mod kprobe;
pub(crate) mod tracepoint;

/// The backends, in order of preference for `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendKind {
    /// fentry/fexit on `unix_{stream,dgram,seqpacket}_sendmsg` (and `_recvmsg`).
    Fentry,
    /// kprobe/kretprobe on the same functions.
    Kprobe,
    /// `sock:sock_send_length` (and `sock:sock_recv_length`) plus the system call registers.
    Tracepoint,
}

impl BackendKind {
    pub(crate) const ALL: [BackendKind; 3] = [Self::Fentry, Self::Kprobe, Self::Tracepoint];

    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::Tracepoint => "tracepoint",
        }
    }

    /// The implementation.
    #[must_use]
    pub(crate) fn backend(self) -> &'static dyn AttachBackend {
        match self {
            Self::Fentry => &fentry::FentryBackend,
            Self::Kprobe => &kprobe::KprobeBackend,
            Self::Tracepoint => &tracepoint::TracepointBackend,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown backend `{s}`"))
    }
}

/// One way of attaching the capture programs.
pub(crate) trait AttachBackend: Sync {
    /// Why this backend cannot work on this kernel, found without loading anything.
    fn unsupported(&self, kernel: &KernelFacts) -> Option<String>;

    /// Loads and attaches the backend's programs from `ebpf`; the receive side's too when
    /// `recv`.
    fn attach(&self, ebpf: &mut Ebpf, kernel: &KernelFacts, recv: bool) -> Result<(), Error>;

    /// Every program of the object this backend may load, on any kernel.
    #[cfg(test)]
    fn programs(&self) -> Vec<&'static str>;
}

/// Runs `f`, a load or attach, and says how long it took (`--verbose`, `UDSTRACE_TIMING`):
/// `{verb} {name}`.
pub(crate) fn timed<T, E>(
    verb: &str,
    name: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let phase = Phase::start();
    let result = f();
    phase.done(format_args!("{verb} {name}"));
    result
}

/// The program called `name` in `ebpf`, as a `T`.
pub(crate) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, Error>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(Error::MissingProgram(name))?
        .try_into()
        .map_err(|e| Error::attach(name, e))
}

/// Writes where the direct map and the page array are (`DIRECT_MAP`: the programs read it for
/// payloads in pages) into the loaded object; a backend calls it after loading a program and
/// before attaching it, so that `/proc/kallsyms`, which it waits for, is read while the
/// object loads and the programs are verified. Writing it again writes the same value.
pub(crate) fn write_direct_map(ebpf: &mut Ebpf, kernel: &KernelFacts) -> Result<(), Error> {
    let phase = Phase::start();
    let direct_map = kernel.direct_map();
    let mut map: aya::maps::Array<_, udstrace_common::DirectMap> = ebpf
        .map_mut(maps::DIRECT_MAP)
        .ok_or(Error::MissingMap(maps::DIRECT_MAP))?
        .try_into()
        .map_err(|_| Error::MissingMap(maps::DIRECT_MAP))?;
    map.set(0, direct_map, 0)
        .map_err(|e| Error::Load(crate::error::one_line(&e)))?;
    phase.done("waited for /proc/kallsyms and wrote the direct map");
    Ok(())
}

/// A load or attach error: [`Error::Refused`] when the kernel refuses the kind of program
/// outright (EPERM, EOPNOTSUPP, ENOTSUPP before any verification: the feature is disabled or
/// locked down), else [`Error::Attach`].
pub(crate) fn refused_or(name: &'static str, e: aya::programs::ProgramError) -> Error {
    use aya::programs::ProgramError;
    const ENOTSUPP: i32 = 524;
    let (io, log_empty) = match &e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => (Some(io_error), verifier_log.to_string().trim().is_empty()),
        ProgramError::SyscallError(s) => (Some(&s.io_error), true),
        _ => (None, false),
    };
    match io.and_then(std::io::Error::raw_os_error) {
        Some(errno @ (libc::EPERM | libc::EOPNOTSUPP | ENOTSUPP)) if log_empty => Error::Refused {
            program: name,
            reason: if errno == ENOTSUPP {
                "operation not supported (ENOTSUPP)".into()
            } else {
                std::io::Error::from_raw_os_error(errno).to_string()
            },
        },
        _ => Error::attach(name, e),
    }
}

/// On kernels without `bpf_loop` that take tail calls (`KernelFacts::tail_calls`), loads the
/// copy loop's continuation program `name` (already loaded by `load`) and puts it at `index` of `COPY_CONTINUE`, where the capture programs
/// tail-call it to copy long messages.
pub(crate) fn set_continuation(
    ebpf: &mut Ebpf,
    kernel: &KernelFacts,
    name: &'static str,
    index: u32,
    load: impl FnOnce(&mut Ebpf) -> Result<(), Error>,
) -> Result<(), Error> {
    if kernel.has_bpf_loop || !kernel.tail_calls {
        return Ok(());
    }
    timed("loaded", name, || load(ebpf))?;
    let fd = ebpf
        .program(name)
        .ok_or(Error::MissingProgram(name))?
        .fd()
        .map_err(|e| Error::attach(name, e))?
        .try_clone()
        .map_err(|e| Error::Load(e.to_string()))?;
    let mut array: aya::maps::ProgramArray<_> = ebpf
        .map_mut(maps::COPY_CONTINUE)
        .ok_or(Error::MissingMap(maps::COPY_CONTINUE))?
        .try_into()
        .map_err(|_| Error::MissingMap(maps::COPY_CONTINUE))?;
    array
        .set(index, &fd, 0)
        .map_err(|e| Error::Load(crate::error::one_line(&e)))
}
