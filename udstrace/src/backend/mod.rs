//! Attach backends: the ways of getting the kernel programs to run on every Unix socket send.
//!
//! Each backend is one implementation of [`AttachBackend`]. All of them feed the same
//! capture code (`udstrace-ebpf/src/capture.rs`) and so produce identical records; they differ
//! only in where they hook and in what each kernel allows. `--backend auto` takes the first
//! one, in order of preference, that this kernel supports and that attaches.

use std::{fmt, str::FromStr};

use aya::Ebpf;

use crate::{error::Error, kernel::KernelFacts};

pub mod tracepoint;

/// The backends, in order of preference for `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// fentry/fexit on `unix_{stream,dgram,seqpacket}_sendmsg`.
    Fentry,
    /// kprobe/kretprobe on the same functions.
    Kprobe,
    /// `sock:sock_send_length` plus the system call registers.
    Tracepoint,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [Self::Fentry, Self::Kprobe, Self::Tracepoint];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::Tracepoint => "tracepoint",
        }
    }

    /// The implementation, if this build has one.
    #[must_use]
    pub fn backend(self) -> Option<&'static dyn AttachBackend> {
        match self {
            Self::Tracepoint => Some(&tracepoint::TracepointBackend),
            Self::Fentry | Self::Kprobe => None,
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
pub trait AttachBackend: Sync {
    fn kind(&self) -> BackendKind;

    /// Why this backend cannot work on this kernel, found without loading anything.
    fn unsupported(&self, kernel: &KernelFacts) -> Option<String>;

    /// Loads and attaches the backend's programs from `ebpf`.
    fn attach(&self, ebpf: &mut Ebpf, kernel: &KernelFacts) -> Result<(), Error>;
}
