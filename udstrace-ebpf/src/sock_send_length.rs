//! Tracepoint backend, send side: `sock:sock_send_length`.
//!
//! match-proto:v6.3:include/trace/events/sock.h:TRACE_EVENT(sock_send_length,
//!     TP_PROTO(struct sock *sk, int ret, int flags))
//! Fired by `sock_sendmsg_nosec()` (net/socket.c) after the protocol's sendmsg returned, with
//! its return value: the bytes the kernel accepted, or a negative errno. The tracepoint does
//! not carry the `msghdr`, so the payload, destination address and control data are found from the
//! system call that is running: its number and arguments are in the task's saved user
//! registers.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    ancillary::Control,
    capture::{self, Dest, Payload},
    config, kernel,
    maps::MMSG_INDEX,
};

/// x86_64 system call numbers of the calls that send on a socket with their payload in user
/// memory (arch/x86/entry/syscalls/syscall_64.tbl).
mod nr {
    pub const WRITE: i64 = 1;
    pub const WRITEV: i64 = 20;
    pub const SENDTO: i64 = 44;
    pub const SENDMSG: i64 = 46;
    pub const PWRITEV: i64 = 296;
    pub const SENDMMSG: i64 = 307;
    pub const PWRITEV2: i64 = 328;
}

/// Userspace ABI (64-bit): `struct msghdr` fields, and the size of `struct mmsghdr`.
const MSGHDR_NAME: u64 = 0;
const MSGHDR_NAMELEN: u64 = 8;
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;
const MSGHDR_CONTROL: u64 = 32;
const MSGHDR_CONTROLLEN: u64 = 40;
const MMSGHDR_SIZE: u64 = 64;

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
    let layout = config::layout();
    // SAFETY: helpers that return the current task and its saved user registers.
    let regs = unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) } as u64;
    let syscall: i64 = kernel::read(regs, layout.regs_syscall_nr)?;
    let arg = |i: usize| kernel::read::<u64>(regs, layout.regs_args[i]);
    let (payload, dest, control) = match syscall {
        nr::WRITE => (
            Payload::Buf {
                ptr: arg(1)?,
                len: arg(2)?,
                kernel: false,
            },
            Dest::NONE,
            Control::NONE,
        ),
        nr::SENDTO => (
            Payload::Buf {
                ptr: arg(1)?,
                len: arg(2)?,
                kernel: false,
            },
            Dest {
                ptr: arg(4)?,
                len: arg(5)? & 0xffff_ffff,
                kernel: false,
            },
            Control::NONE,
        ),
        nr::WRITEV | nr::PWRITEV | nr::PWRITEV2 => (
            Payload::Segments {
                array: arg(1)?,
                count: arg(2)?,
                skip: 0,
                kind: capture::SEG_USER_IOVEC,
            },
            Dest::NONE,
            Control::NONE,
        ),
        nr::SENDMSG => user_send(arg(1)?)?,
        nr::SENDMMSG => {
            let tid = pid_tgid as u32;
            // SAFETY: the value is copied out at once.
            match unsafe { MMSG_INDEX.get(tid) }.copied() {
                Some(index) => {
                    let _ = MMSG_INDEX.insert(tid, index + 1, 0);
                    user_send(arg(1)? + u64::from(index) * MMSGHDR_SIZE)?
                }
                None => (Payload::Missing, Dest::NONE, Control::NONE),
            }
        }
        _ => (Payload::Missing, Dest::NONE, Control::NONE),
    };
    // Kernels with this tracepoint (6.3+) all have bpf_loop.
    capture::capture_send::<true, _>(
        ctx,
        capture::NO_CONTINUATION,
        sk,
        i64::from(ret),
        syscall as i32,
        payload,
        dest,
        control,
        false,
        layout,
    )
}

/// Payload, destination and control data of a user `struct msghdr`.
#[inline(always)]
fn user_send(msghdr: u64) -> Result<(Payload, Dest, Control), i64> {
    Ok((
        user_msghdr(msghdr)?,
        Dest {
            ptr: read_user(msghdr + MSGHDR_NAME)?,
            len: read_user(msghdr + MSGHDR_NAMELEN)? & 0xffff_ffff,
            kernel: false,
        },
        Control {
            ptr: read_user(msghdr + MSGHDR_CONTROL)?,
            len: read_user(msghdr + MSGHDR_CONTROLLEN)?,
            kernel: false,
        },
    ))
}

/// Reads a `u64` of user memory.
#[inline(always)]
fn read_user(at: u64) -> Result<u64, i64> {
    // SAFETY: user memory read through the checking helper.
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(at as *const u64).map_err(i64::from) }
}

/// The iovec array of a user `struct msghdr`.
#[inline(always)]
fn user_msghdr(msghdr: u64) -> Result<Payload, i64> {
    Ok(Payload::Segments {
        array: read_user(msghdr + MSGHDR_IOV)?,
        count: read_user(msghdr + MSGHDR_IOVLEN)?,
        skip: 0,
        kind: capture::SEG_USER_IOVEC,
    })
}
