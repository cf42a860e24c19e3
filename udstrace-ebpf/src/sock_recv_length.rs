//! Tracepoint backend, receive side (`--recv`): `sock:sock_recv_length` (6.3+).
//!
//! Fired by `sock_recvmsg_nosec()` (net/socket.c) after the protocol's recvmsg returned, with
//! its return value (bytes received, or a negative errno) and the call's flags. The reader's
//! buffers, filled by then, are found from the system call that is running (`syscall.rs`).
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros call each program with its context by value"
)]

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    config, copy, filter,
    kernel::{Btf, Mem},
    payload::{Payload, SEG_USER_IOVEC},
    record,
    syscall::{self, Regs},
};

/// match-proto: v6.18 include/trace/events/sock.h: TRACE_EVENT(sock_recv_length, TP_PROTO(struct sock *sk, int ret, int flags))
#[btf_tracepoint(function = "sock_recv_length")]
fn sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sock_recv_length(&ctx);
    0
}

fn try_sock_recv_length(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let sk: u64 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let flags: i32 = ctx.arg(2);
    if ret < 0 || flags & syscall::MSG_PEEK != 0 {
        return Ok(());
    }
    let layout = config::layout();
    let current = Btf::current();
    let pid_tgid = Btf::pid_tgid(current, layout);
    if !filter::wanted((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let Some(sock_type) = filter::unix_type::<Btf>(sk, layout) else {
        return Ok(());
    };
    let task = Btf::task(current, layout);
    let regs = Regs::of(current);
    let nr = regs.number()?;
    let mut received = i64::from(ret);
    let abi = config::syscall_abi();
    let payload = if nr == abi.read || nr == abi.recvfrom {
        let len = regs.arg(2)?;
        // A datagram longer than the buffer (MSG_TRUNC) returns its full length.
        if received.cast_unsigned() > len {
            received = len.cast_signed();
        }
        Payload::buf(regs.arg(1)?, len, false)
    } else if nr == abi.readv || nr == abi.preadv || nr == abi.preadv2 {
        Payload::segments(regs.arg(1)?, regs.arg(2)?, 0, SEG_USER_IOVEC)
    } else if nr == abi.recvmsg {
        syscall::msghdr_iovecs(regs.arg(1)?)?
    } else {
        // recvmmsg: which message of the vector this is is not known here; a 32-bit task's
        // calls are not decoded.
        Payload::MISSING
    };
    record::capture_send::<true, Btf, _>(
        ctx,
        copy::NO_CONTINUATION,
        pid_tgid,
        task,
        sk,
        sock_type,
        received,
        nr as i32,
        payload,
        Mem::NONE,
        Mem::NONE,
        true,
        layout,
    )
}
