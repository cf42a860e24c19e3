//! The 64-bit system call ABI the tracepoint backend reads: registers and `msghdr`.
//!
//! The running call's number and arguments (the task's saved user registers, where the
//! layout says), and the user `struct msghdr` (the same on x86_64 and arm64, LP64). The call
//! numbers come from the running architecture's table (`config::syscall_abi()`).

use aya_ebpf::helpers::generated;

use crate::{
    config,
    kernel::{self, read_user, Btf, Mem, Reader},
    payload::{Payload, SEG_USER_IOVEC},
};

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

/// The current task's saved user registers (6.3+ callers: `bpf_task_pt_regs` is there),
/// read through the BTF-typed pointer the helper returns.
#[derive(Clone, Copy)]
pub(crate) struct Regs(u64);

impl Regs {
    /// The registers of `task`, the current task as `Btf::current` gives it.
    #[inline(always)]
    pub(crate) fn of(task: u64) -> Self {
        // SAFETY: a helper that checks its typed argument.
        Self(unsafe { generated::bpf_task_pt_regs(task as *mut _) }.cast_unsigned())
    }

    /// The current task's registers, for a hook that needs nothing else of the task.
    #[inline(always)]
    pub(crate) fn current() -> Self {
        Self::of(Btf::current())
    }

    /// The system call number (`SYSCALL_COMPAT` for a 32-bit task).
    #[inline(always)]
    pub(crate) fn number(self) -> Result<i64, i64> {
        kernel::regs_syscall::<Btf>(self.0)
    }

    /// Argument `i` (0-5).
    #[inline(always)]
    pub(crate) fn arg(self, i: usize) -> Result<u64, i64> {
        Btf::read(self.0, config::layout().regs_args[i])
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
