//! The `x86_64` system call ABI the tracepoint backend reads: call numbers, registers, `msghdr`.
//!
//! The running call's number and arguments (the task's saved user registers), the calls that
//! send and receive on a socket (arch/x86/entry/syscalls/syscall_64.tbl), and the user
//! `struct msghdr`.

use aya_ebpf::helpers::generated;

use crate::{
    config,
    kernel::{self, read_user, Mem},
    payload::{Payload, SEG_USER_IOVEC},
};

pub(crate) const READ: i64 = 0;
pub(crate) const WRITE: i64 = 1;
pub(crate) const READV: i64 = 19;
pub(crate) const WRITEV: i64 = 20;
pub(crate) const SENDTO: i64 = 44;
pub(crate) const RECVFROM: i64 = 45;
pub(crate) const SENDMSG: i64 = 46;
pub(crate) const RECVMSG: i64 = 47;
pub(crate) const PREADV: i64 = 295;
pub(crate) const PWRITEV: i64 = 296;
pub(crate) const SENDMMSG: i64 = 307;
pub(crate) const PREADV2: i64 = 327;
pub(crate) const PWRITEV2: i64 = 328;

/// `MSG_PEEK`: a read that leaves the bytes queued; not a receive.
pub(crate) const MSG_PEEK: i32 = 2;

/// Userspace ABI (64-bit): `struct msghdr` fields, and the size of `struct mmsghdr`.
const MSGHDR_NAME: u64 = 0;
const MSGHDR_NAMELEN: u64 = 8;
const MSGHDR_IOV: u64 = 16;
const MSGHDR_IOVLEN: u64 = 24;
const MSGHDR_CONTROL: u64 = 32;
const MSGHDR_CONTROLLEN: u64 = 40;
pub(crate) const MMSGHDR_SIZE: u64 = 64;
/// `struct mmsghdr::msg_len`: where the kernel writes what it sent of each message.
pub(crate) const MMSGHDR_LEN: u64 = 56;
/// `UIO_MAXIOV`: `sendmmsg` sends at most this many messages of a longer vector.
pub(crate) const UIO_MAXIOV: u64 = 1024;

/// The current task's saved user registers (6.3+ callers: `bpf_task_pt_regs` is there).
#[derive(Clone, Copy)]
pub(crate) struct Regs(u64);

impl Regs {
    #[inline(always)]
    pub(crate) fn current() -> Self {
        // SAFETY: helpers that return the current task and its saved user registers.
        Self(
            unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) }
                .cast_unsigned(),
        )
    }

    /// The system call number (`orig_ax`).
    #[inline(always)]
    pub(crate) fn number(self) -> Result<i64, i64> {
        kernel::read(self.0, config::layout().regs_syscall_nr)
    }

    /// Argument `i` (0-5).
    #[inline(always)]
    pub(crate) fn arg(self, i: usize) -> Result<u64, i64> {
        kernel::read(self.0, config::layout().regs_args[i])
    }
}

/// The iovec array of a user `struct msghdr`.
#[inline(always)]
pub(crate) fn msghdr_iovecs(msghdr: u64) -> Result<Payload, i64> {
    Ok(Payload::segments(
        read_user(msghdr + MSGHDR_IOV)?,
        read_user(msghdr + MSGHDR_IOVLEN)?,
        0,
        SEG_USER_IOVEC,
    ))
}

/// The destination address of a user `struct msghdr`.
#[inline(always)]
pub(crate) fn msghdr_name(msghdr: u64) -> Result<Mem, i64> {
    Ok(Mem::user(
        read_user(msghdr + MSGHDR_NAME)?,
        read_user::<u64>(msghdr + MSGHDR_NAMELEN)? & 0xffff_ffff,
    ))
}

/// The control data of a user `struct msghdr`.
#[inline(always)]
pub(crate) fn msghdr_control(msghdr: u64) -> Result<Mem, i64> {
    Ok(Mem::user(
        read_user(msghdr + MSGHDR_CONTROL)?,
        read_user(msghdr + MSGHDR_CONTROLLEN)?,
    ))
}
