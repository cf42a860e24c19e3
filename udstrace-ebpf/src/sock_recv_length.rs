//! Tracepoint backend, receive side (`--recv`): `sock:sock_recv_length`.
//!
//! match-proto:v6.3:include/trace/events/sock.h:TRACE_EVENT(sock_recv_length,
//!     TP_PROTO(struct sock *sk, int ret, int flags))
//! Fired by `sock_recvmsg_nosec()` (net/socket.c) after the protocol's recvmsg returned, with
//! its return value (bytes received, or a negative errno) and the call's flags. The reader's
//! buffers, filled by then, are found from the system call that is running.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    ancillary::Control,
    capture::{self, Dest, Payload},
    config, kernel,
};

/// x86_64 system call numbers of the calls that read from a socket into user memory.
mod nr {
    pub const READ: i64 = 0;
    pub const READV: i64 = 19;
    pub const RECVFROM: i64 = 45;
    pub const RECVMSG: i64 = 47;
    pub const PREADV: i64 = 295;
    pub const PREADV2: i64 = 327;
}

/// `MSG_PEEK`: a read that leaves the bytes queued; not a receive.
const MSG_PEEK: i32 = 2;

/// Userspace ABI (64-bit): `struct msghdr` fields `msg_iov` and `msg_iovlen`.
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;

#[btf_tracepoint(function = "sock_recv_length")]
pub fn sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sock_recv_length(&ctx);
    0
}

fn try_sock_recv_length(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let sk: u64 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let flags: i32 = ctx.arg(2);
    if ret < 0 || flags & MSG_PEEK != 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !capture::wanted((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let layout = config::layout();
    // SAFETY: helpers that return the current task and its saved user registers.
    let regs = unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) } as u64;
    let syscall: i64 = kernel::read(regs, layout.regs_syscall_nr)?;
    let arg = |i: usize| kernel::read::<u64>(regs, layout.regs_args[i]);
    let mut received = i64::from(ret);
    let payload = match syscall {
        nr::READ | nr::RECVFROM => {
            let len = arg(2)?;
            // A datagram longer than the buffer (MSG_TRUNC) returns its full length.
            if received as u64 > len {
                received = len as i64;
            }
            Payload::Buf {
                ptr: arg(1)?,
                len,
                kernel: false,
            }
        }
        nr::READV | nr::PREADV | nr::PREADV2 => Payload::Segments {
            array: arg(1)?,
            count: arg(2)?,
            skip: 0,
            kind: capture::SEG_USER_IOVEC,
        },
        nr::RECVMSG => {
            let msghdr = arg(1)?;
            // SAFETY: user memory read through the checking helper.
            let read = |offset: u64| unsafe {
                aya_ebpf::helpers::bpf_probe_read_user((msghdr + offset) as *const u64)
                    .map_err(i64::from)
            };
            Payload::Segments {
                array: read(MSGHDR_IOV)?,
                count: read(MSGHDR_IOVLEN)?,
                skip: 0,
                kind: capture::SEG_USER_IOVEC,
            }
        }
        // recvmmsg: which message of the vector this is is not known here.
        _ => Payload::Missing,
    };
    capture::capture_send::<true, _>(
        ctx,
        capture::NO_CONTINUATION,
        sk,
        received,
        syscall as i32,
        payload,
        Dest::NONE,
        Control::NONE,
        true,
        layout,
    )
}
