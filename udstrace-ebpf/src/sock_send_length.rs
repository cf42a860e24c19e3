//! Tracepoint backend, send side: `sock:sock_send_length`.
//!
//! match-proto:v6.3:include/trace/events/sock.h:TRACE_EVENT(sock_send_length,
//!     TP_PROTO(struct sock *sk, int ret, int flags))
//! Fired by `sock_sendmsg_nosec()` (net/socket.c) after the protocol's sendmsg returned, with
//! its return value: the bytes the kernel accepted, or a negative errno. The tracepoint does
//! not carry the `msghdr`, so the payload, destination address and control data are found
//! from the system call that is running (`syscall.rs`).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::btf_tracepoint, programs::BtfTracePointContext,
};

use crate::{
    capture::{self, Payload},
    config,
    kernel::Mem,
    maps::MMSG_INDEX,
    syscall::{self, Regs},
};

#[btf_tracepoint(function = "sock_send_length")]
pub fn sock_send_length(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sock_send_length(&ctx);
    0
}

fn try_sock_send_length(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let sk: u64 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let pid_tgid = bpf_get_current_pid_tgid();
    if !capture::wanted((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let regs = Regs::current();
    let nr = regs.number()?;
    let user_buf = || -> Result<Payload, i64> {
        Ok(Payload::Buf {
            ptr: regs.arg(1)?,
            len: regs.arg(2)?,
            kernel: false,
        })
    };
    let (payload, dest, control) = match nr {
        syscall::WRITE => (user_buf()?, Mem::NONE, Mem::NONE),
        syscall::SENDTO => (
            user_buf()?,
            Mem {
                ptr: regs.arg(4)?,
                len: regs.arg(5)? & 0xffff_ffff,
                kernel: false,
            },
            Mem::NONE,
        ),
        syscall::WRITEV | syscall::PWRITEV | syscall::PWRITEV2 => (
            Payload::Segments {
                array: regs.arg(1)?,
                count: regs.arg(2)?,
                skip: 0,
                kind: capture::SEG_USER_IOVEC,
            },
            Mem::NONE,
            Mem::NONE,
        ),
        syscall::SENDMSG => msghdr_send(regs.arg(1)?)?,
        syscall::SENDMMSG => {
            let tid = pid_tgid as u32;
            // SAFETY: the value is copied out at once.
            match unsafe { MMSG_INDEX.get(tid) }.copied() {
                Some(index) => {
                    let _ = MMSG_INDEX.insert(tid, index + 1, 0);
                    msghdr_send(regs.arg(1)? + u64::from(index) * syscall::MMSGHDR_SIZE)?
                }
                None => (Payload::Missing, Mem::NONE, Mem::NONE),
            }
        }
        _ => (Payload::Missing, Mem::NONE, Mem::NONE),
    };
    // Kernels with this tracepoint (6.3+) all have bpf_loop.
    capture::capture_send::<true, _>(
        ctx,
        capture::NO_CONTINUATION,
        sk,
        i64::from(ret),
        nr as i32,
        payload,
        dest,
        control,
        false,
        config::layout(),
    )
}

/// Payload, destination and control data of a user `struct msghdr` (a function, not a
/// closure: a closure returning a struct becomes a BPF subprogram whose BTF the kernel
/// refuses).
#[inline(always)]
fn msghdr_send(msghdr: u64) -> Result<(Payload, Mem, Mem), i64> {
    Ok((
        syscall::msghdr_iovecs(msghdr)?,
        syscall::msghdr_name(msghdr)?,
        syscall::msghdr_control(msghdr)?,
    ))
}
