//! Tracepoint backend, send side: `sock:sock_send_length` (6.3+).
//!
//! Fired by `sock_sendmsg_nosec()` (net/socket.c) after the protocol's sendmsg returned, with
//! its return value: the bytes the kernel accepted, or a negative errno. The tracepoint does
//! not carry the `msghdr`, so the payload, destination address and control data are found
//! from the system call that is running (`syscall.rs`).
//!
//! `sendmmsg` sends its vector's messages one after the other, each through this tracepoint;
//! which one it is comes from [`mmsg_index`]. (A `syscalls:sys_enter_sendmmsg` tracepoint
//! could number them exactly, but enabling any system call tracepoint sends every system
//! call of every process through the kernel's slow entry path: 35-40 ns more per call here.)
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros call each program with its context by value"
)]

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    config, copy, filter,
    kernel::{self, Btf, Mem},
    maps::{MmsgNext, MMSG_NEXT},
    payload::{Payload, SEG_USER_IOVEC},
    record,
    syscall::{self, Regs},
};

/// match-proto: v6.18 include/trace/events/sock.h: TRACE_EVENT(sock_send_length, TP_PROTO(struct sock *sk, int ret, int flags))
#[btf_tracepoint(function = "sock_send_length")]
fn sock_send_length(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sock_send_length(&ctx);
    0
}

fn try_sock_send_length(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let sk: u64 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let layout = config::layout();
    let current = Btf::current();
    let pid_tgid = Btf::pid_tgid(current, layout);
    if !filter::wanted((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // Before the system call is decoded: the tracepoint fires for every socket.
    let Some(sock_type) = filter::unix_type::<Btf>(sk, layout) else {
        return Ok(());
    };
    let task = Btf::task(current, layout);
    let regs = Regs::of(current);
    let nr = regs.number()?;
    let user_buf =
        || -> Result<Payload, i64> { Ok(Payload::buf(regs.arg(1)?, regs.arg(2)?, false)) };
    let abi = config::syscall_abi();
    // The numbers are the table's, not constants: an if chain (the verifier prunes it, the
    // table being read-only data). A 32-bit task's number matches none.
    let (payload, dest, control) = if nr == abi.write {
        (user_buf()?, Mem::NONE, Mem::NONE)
    } else if nr == abi.sendto {
        (
            user_buf()?,
            Mem::user(regs.arg(4)?, regs.arg(5)? & 0xffff_ffff),
            Mem::NONE,
        )
    } else if nr == abi.writev || nr == abi.pwritev || nr == abi.pwritev2 {
        (
            Payload::segments(regs.arg(1)?, regs.arg(2)?, 0, SEG_USER_IOVEC),
            Mem::NONE,
            Mem::NONE,
        )
    } else if nr == abi.sendmsg {
        msghdr_send(regs.arg(1)?)?
    } else if nr == abi.sendmmsg {
        let vector = regs.arg(1)?;
        let index = mmsg_index(pid_tgid as u32, vector, regs.arg(2)?, ret);
        msghdr_send(vector + index * syscall::MMSGHDR_SIZE)?
    } else {
        (Payload::MISSING, Mem::NONE, Mem::NONE)
    };
    // Kernels with this tracepoint (6.3+) all have bpf_loop.
    record::capture_send::<true, Btf, _>(
        ctx,
        copy::NO_CONTINUATION,
        pid_tgid,
        task,
        sk,
        sock_type,
        i64::from(ret),
        nr as i32,
        payload,
        dest,
        control,
        false,
        layout,
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

/// The index of the message of the `sendmmsg` vector `vector` (of `vlen` entries) that the
/// kernel just sent (`ret`: bytes, or a negative errno), for thread `tid`.
///
/// `__sys_sendmmsg()` (net/socket.c) sends entry 0, 1, ... in order; after each it writes
/// what it sent to the entry's `msg_len`, and it stops at the first error, at a partial write,
/// or after `min(vlen, UIO_MAXIOV)` entries. So the thread's last message was entry `k` of the
/// same vector and the call went on when `k + 1` is still in range and entry `k`'s `msg_len`
/// holds what that send returned; otherwise this is entry 0 of a new call. An error ends the
/// call, and so does the last entry. What this cannot see: a call that stopped without a send
/// returning (an entry the kernel refused before it reached the socket: a bad address, too
/// many iovecs), or after a partial write on a byte stream, followed by another call on the
/// same thread with the same vector, is taken to go on where the first stopped.
#[inline(always)]
fn mmsg_index(tid: u32, vector: u64, vlen: u64, ret: i32) -> u64 {
    let vlen = vlen.min(syscall::UIO_MAXIOV);
    // SAFETY: the value is copied out at once.
    let index = match unsafe { MMSG_NEXT.get(tid) }.copied() {
        Some(prev)
            if prev.vector == vector
                && u64::from(prev.next) < vlen
                && kernel::read_user::<u32>(
                    vector
                        + u64::from(prev.next - 1) * syscall::MMSGHDR_SIZE
                        + syscall::MMSGHDR_LEN,
                ) == Ok(prev.sent) =>
        {
            u64::from(prev.next)
        }
        _ => 0,
    };
    if ret < 0 || index + 1 >= vlen {
        let _ = MMSG_NEXT.remove(tid);
    } else {
        let next = MmsgNext {
            vector,
            next: index as u32 + 1,
            sent: ret.cast_unsigned(),
        };
        let _ = MMSG_NEXT.insert(tid, next, 0);
    }
    index
}
