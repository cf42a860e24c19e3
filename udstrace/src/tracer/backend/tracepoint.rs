//! The tracepoint backend: `tp_btf/sock_send_length` (kernel 6.3+) sees every socket send
//! with the number of bytes the kernel accepted; the payload is read from the buffers named
//! by the arguments of the running system call. It needs neither kprobes nor BPF trampolines,
//! so it works on locked-down kernels that refuse both. It attaches no system call
//! tracepoint: enabling one slows every system call of the machine (see
//! `udstrace-ebpf/src/sock_send_length.rs` for how `sendmmsg` messages are numbered without).

use aya::{programs::BtfTracePoint, Ebpf};

use super::{program, timed, write_direct_map, AttachBackend};
use crate::{
    error::Error,
    kernel::{hooks, KernelFacts},
};

pub(crate) struct TracepointBackend;

const SEND_PROGRAM: &str = "sock_send_length";
const RECV_PROGRAM: &str = "sock_recv_length";

impl AttachBackend for TracepointBackend {
    fn unsupported(&self, kernel: &KernelFacts) -> Option<String> {
        if !kernel.has_sock_send_length {
            return Some(format!(
                "kernel {} has no sock:sock_send_length tracepoint (added in 6.3)",
                kernel.release
            ));
        }
        None
    }

    #[cfg(test)]
    fn programs(&self) -> Vec<&'static str> {
        vec![SEND_PROGRAM, RECV_PROGRAM]
    }

    fn attach(&self, ebpf: &mut Ebpf, kernel: &KernelFacts, recv: bool) -> Result<(), Error> {
        attach_program(ebpf, SEND_PROGRAM, hooks::SEND_TRACEPOINT, kernel)?;
        if recv {
            // Added with sock_send_length (6.3).
            attach_program(ebpf, RECV_PROGRAM, hooks::RECV_TRACEPOINT, kernel)?;
        }
        Ok(())
    }
}

/// Loads the `tp_btf` program `name` for tracepoint `tracepoint` and attaches it.
pub(crate) fn attach_program(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &str,
    kernel: &KernelFacts,
) -> Result<(), Error> {
    let btf = kernel.btf()?;
    let loaded: &mut BtfTracePoint = program(ebpf, name)?;
    timed("loaded", name, || loaded.load(tracepoint, btf)).map_err(|e| Error::attach(name, e))?;
    write_direct_map(ebpf, kernel)?;
    let loaded: &mut BtfTracePoint = program(ebpf, name)?;
    timed("attached", name, || loaded.attach()).map_err(|e| Error::attach(name, e))?;
    Ok(())
}
