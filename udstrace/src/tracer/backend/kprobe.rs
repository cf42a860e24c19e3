//! The kprobe/kretprobe backend: the same functions as the fentry backend, for kernels with
//! kprobes but without BPF trampolines (or with trampolines refused). One entry and one
//! return program serve the three sendmsg functions, which share a prototype.

use aya::{programs::KProbe, Ebpf};
use udstrace_common::maps;

use super::{
    program, refused_or, set_continuation, timed, write_direct_map, AttachBackend, SendFunctions,
};
use crate::{error::Error, kernel::KernelFacts};

pub(crate) struct KprobeBackend;

const SENDMSG_ENTRY: &str = "kprobe_unix_sendmsg";
const SENDMSG_RETURN: &str = "kretprobe_unix_sendmsg";
const SENDPAGE_ENTRY: &str = "kprobe_unix_stream_sendpage";
const RECVMSG_ENTRY: &str = "kprobe_unix_recvmsg";
const SENDPAGE_RETURN: &str = "kretprobe_unix_stream_sendpage";
const SENDMSG_RETURN_SEQ: &str = "kretprobe_unix_sendmsg_seq";
const SENDPAGE_RETURN_SEQ: &str = "kretprobe_unix_stream_sendpage_seq";
const SENDMSG_RETURN_FLAT: &str = "kretprobe_unix_sendmsg_flat";
const SENDPAGE_RETURN_FLAT: &str = "kretprobe_unix_stream_sendpage_flat";
/// The copy loop's continuation, and its index in `COPY_CONTINUE` (see the kernel side).
const CONTINUE: &str = "kretprobe_copy_continue";

impl AttachBackend for KprobeBackend {
    fn unsupported(&self, kernel: &KernelFacts) -> Option<String> {
        if !kernel.has_kprobes {
            return Some(format!(
                "kernel {} has no kprobes (built without CONFIG_KPROBES)",
                kernel.release
            ));
        }
        SendFunctions::missing_symbol(kernel)
    }

    #[cfg(test)]
    fn programs(&self) -> Vec<&'static str> {
        vec![
            SENDMSG_ENTRY,
            SENDMSG_RETURN,
            SENDPAGE_ENTRY,
            RECVMSG_ENTRY,
            SENDPAGE_RETURN,
            SENDMSG_RETURN_SEQ,
            SENDPAGE_RETURN_SEQ,
            SENDMSG_RETURN_FLAT,
            SENDPAGE_RETURN_FLAT,
            CONTINUE,
        ]
    }

    fn attach(&self, ebpf: &mut Ebpf, kernel: &KernelFacts, recv: bool) -> Result<(), Error> {
        set_continuation(ebpf, kernel, CONTINUE, maps::CONTINUE_KRETPROBE, |ebpf| {
            let cont: &mut KProbe = program(ebpf, CONTINUE)?;
            cont.load().map_err(|e| refused_or(CONTINUE, e))
        })?;
        // Returns first: a return probe attached after its entry probe could miss the return
        // of a call that entered in between, leaving a stale entry behind.
        // The return programs copying under bpf_loop, or those for kernels without it.
        // Without bpf_loop, those going on in tail calls, or where the architecture's JIT
        // refuses them, those without.
        let (sendmsg_return, sendpage_return) = if kernel.has_bpf_loop {
            (SENDMSG_RETURN, SENDPAGE_RETURN)
        } else if kernel.tail_calls {
            (SENDMSG_RETURN_SEQ, SENDPAGE_RETURN_SEQ)
        } else {
            (SENDMSG_RETURN_FLAT, SENDPAGE_RETURN_FLAT)
        };
        for name in [
            sendmsg_return,
            SENDMSG_ENTRY,
            sendpage_return,
            SENDPAGE_ENTRY,
        ] {
            let sendpage = name == SENDPAGE_ENTRY || name == sendpage_return;
            if sendpage && !kernel.sendpage_symbol() {
                continue;
            }
            let probe: &mut KProbe = program(ebpf, name)?;
            timed("loaded", name, || probe.load()).map_err(|e| refused_or(name, e))?;
            write_direct_map(ebpf, kernel)?;
            let probe: &mut KProbe = program(ebpf, name)?;
            for function in SendFunctions::with_sendpage(kernel.sendpage_symbol()) {
                if sendpage == (function == "unix_stream_sendpage") {
                    timed("attached", &format!("{name} to {function}"), || {
                        probe.attach(function, 0)
                    })
                    .map_err(|e| refused_or(name, e))?;
                }
            }
            // The receive functions return an int too: the same return probe.
            if recv && name == sendmsg_return {
                for function in SendFunctions::RECVMSG {
                    timed("attached", &format!("{name} to {function}"), || {
                        probe.attach(function, 0)
                    })
                    .map_err(|e| refused_or(name, e))?;
                }
            }
        }
        if recv {
            let probe: &mut KProbe = program(ebpf, RECVMSG_ENTRY)?;
            timed("loaded", RECVMSG_ENTRY, || probe.load())
                .map_err(|e| refused_or(RECVMSG_ENTRY, e))?;
            write_direct_map(ebpf, kernel)?;
            let probe: &mut KProbe = program(ebpf, RECVMSG_ENTRY)?;
            for function in SendFunctions::RECVMSG {
                timed(
                    "attached",
                    &format!("{RECVMSG_ENTRY} to {function}"),
                    || probe.attach(function, 0),
                )
                .map_err(|e| refused_or(RECVMSG_ENTRY, e))?;
            }
        }
        Ok(())
    }
}
