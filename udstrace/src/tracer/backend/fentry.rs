//! The fentry/fexit backend: BPF trampolines on `unix_{stream,dgram,seqpacket}_sendmsg` (and
//! `unix_stream_sendpage` before 6.5). The entry notes where the message's bytes are, the exit
//! copies as many as the function returned. Cheapest of the backends: the programs run only
//! for Unix socket sends, and a trampoline costs less than a kprobe's breakpoint.

use aya::{
    programs::{FEntry, FExit},
    Ebpf,
};
use udstrace_common::maps;

use super::{
    program, refused_or, set_continuation, timed, write_direct_map, AttachBackend, SendFunctions,
};
use crate::{error::Error, kernel::KernelFacts};

pub(crate) struct FentryBackend;

/// The copy loop's continuation, and its index in `COPY_CONTINUE` (see the kernel side).
const CONTINUE: &str = "fexit_copy_continue";

impl AttachBackend for FentryBackend {
    fn unsupported(&self, kernel: &KernelFacts) -> Option<String> {
        SendFunctions::missing(kernel)
    }

    #[cfg(test)]
    fn programs(&self) -> Vec<&'static str> {
        let mut names = vec![CONTINUE];
        for function in SendFunctions::ALL {
            names.extend(fentry_program(function));
            names.extend(fexit_program(function, true));
            names.extend(fexit_program(function, false));
        }
        names
    }

    fn attach(&self, ebpf: &mut Ebpf, kernel: &KernelFacts, recv: bool) -> Result<(), Error> {
        let btf = kernel.btf()?;
        // The continuation first: the fexit programs may tail-call it from their first run.
        set_continuation(ebpf, kernel, CONTINUE, maps::CONTINUE_FEXIT, |ebpf| {
            let cont: &mut FExit = program(ebpf, CONTINUE)?;
            cont.load("unix_stream_sendmsg", btf)
                .map_err(|e| refused_or(CONTINUE, e))
        })?;
        let receive = SendFunctions::RECVMSG.into_iter().filter(|_| recv);
        for function in SendFunctions::with_sendpage(kernel.has_sendpage).chain(receive) {
            // The exit first: a call that enters once the entry is attached is always seen
            // leaving (an entry without its exit counts as a lost call).
            let exit_name = fexit_program(function, kernel.has_bpf_loop)?;
            let exit: &mut FExit = program(ebpf, exit_name)?;
            timed("loaded", exit_name, || exit.load(function, btf))
                .map_err(|e| refused_or(exit_name, e))?;
            write_direct_map(ebpf, kernel)?;
            let exit: &mut FExit = program(ebpf, exit_name)?;
            timed("attached", exit_name, || exit.attach()).map_err(|e| refused_or(exit_name, e))?;

            let entry_name = fentry_program(function)?;
            let entry: &mut FEntry = program(ebpf, entry_name)?;
            timed("loaded", entry_name, || entry.load(function, btf))
                .map_err(|e| refused_or(entry_name, e))?;
            timed("attached", entry_name, || entry.attach())
                .map_err(|e| refused_or(entry_name, e))?;
        }
        Ok(())
    }
}

/// The program names (one pair per function: a trampoline program is loaded for one
/// function).
fn fentry_program(function: &str) -> Result<&'static str, Error> {
    Ok(match function {
        "unix_stream_sendmsg" => "fentry_unix_stream_sendmsg",
        "unix_dgram_sendmsg" => "fentry_unix_dgram_sendmsg",
        "unix_seqpacket_sendmsg" => "fentry_unix_seqpacket_sendmsg",
        "unix_stream_sendpage" => "fentry_unix_stream_sendpage",
        "unix_stream_recvmsg" => "fentry_unix_stream_recvmsg",
        "unix_dgram_recvmsg" => "fentry_unix_dgram_recvmsg",
        "unix_seqpacket_recvmsg" => "fentry_unix_seqpacket_recvmsg",
        _ => return Err(Error::MissingProgram("fentry")),
    })
}

/// The fexit program of `function`: the one copying under `bpf_loop`, or the one for
/// kernels without it.
fn fexit_program(function: &str, bpf_loop: bool) -> Result<&'static str, Error> {
    Ok(match (function, bpf_loop) {
        ("unix_stream_sendmsg", true) => "fexit_unix_stream_sendmsg",
        ("unix_stream_sendmsg", false) => "fexit_unix_stream_sendmsg_seq",
        ("unix_dgram_sendmsg", true) => "fexit_unix_dgram_sendmsg",
        ("unix_dgram_sendmsg", false) => "fexit_unix_dgram_sendmsg_seq",
        ("unix_seqpacket_sendmsg", true) => "fexit_unix_seqpacket_sendmsg",
        ("unix_seqpacket_sendmsg", false) => "fexit_unix_seqpacket_sendmsg_seq",
        ("unix_stream_sendpage", true) => "fexit_unix_stream_sendpage",
        ("unix_stream_sendpage", false) => "fexit_unix_stream_sendpage_seq",
        ("unix_stream_recvmsg", true) => "fexit_unix_stream_recvmsg",
        ("unix_stream_recvmsg", false) => "fexit_unix_stream_recvmsg_seq",
        ("unix_dgram_recvmsg", true) => "fexit_unix_dgram_recvmsg",
        ("unix_dgram_recvmsg", false) => "fexit_unix_dgram_recvmsg_seq",
        ("unix_seqpacket_recvmsg", true) => "fexit_unix_seqpacket_recvmsg",
        ("unix_seqpacket_recvmsg", false) => "fexit_unix_seqpacket_recvmsg_seq",
        _ => return Err(Error::MissingProgram("fexit")),
    })
}
