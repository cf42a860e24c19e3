//! Run-time configuration, written by userspace into the object's globals before loading.

use udstrace_common::{filter::PID_LIST_MAX, KernelLayout, SyscallAbi};

/// Offsets of the kernel fields the programs read, from the running kernel's BTF.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout::ZERO;

/// The running architecture's system call numbers and registers (see `SyscallAbi`).
#[unsafe(no_mangle)]
static SYSCALL_ABI: SyscallAbi = SyscallAbi::ZERO;

/// Process id of udstrace itself: its own traffic is never captured.
#[unsafe(no_mangle)]
static SELF_TGID: u32 = 0;

/// Largest number of payload bytes copied per message.
#[unsafe(no_mangle)]
static SNAPLEN: u32 = 0;

/// Bytes waiting in the ring buffer above which a record wakes userspace; below it records
/// are left for userspace's periodic drain, saving a wakeup per message.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 0;

/// Non-zero: the kernel has `bpf_get_current_task_btf` and `bpf_task_pt_regs` (5.15+).
#[unsafe(no_mangle)]
static USE_TASK_PT_REGS: u32 = 0;

/// Which kernel-side filters are on (`udstrace_common::filter::*` bits): processes listed in
/// `PID_FILTER`, command names in `COMM_FILTER`, users in `UID_FILTER`.
#[unsafe(no_mangle)]
static FILTERS: u32 = 0;

/// Socket types to capture, one bit per `sk_type` value (`1 << type`); 0 for all.
#[unsafe(no_mangle)]
static TYPE_MASK: u32 = 0;

/// `-p` without `--follow`: the processes to capture, when the `PID_LIST` filter is on.
#[unsafe(no_mangle)]
static PID_LIST: [u32; PID_LIST_MAX] = [0; PID_LIST_MAX];

/// The layout, read in place: the pointer goes through a volatile read so that the compiler
/// cannot fold the zero initialiser into the field loads, and nothing is copied to the stack.
#[inline(always)]
pub(crate) fn layout() -> &'static KernelLayout {
    // SAFETY: a pointer to a global that lives as long as the program.
    unsafe { &*core::ptr::read_volatile(&(&raw const LAYOUT)) }
}

/// The system call ABI, read in place like the layout.
#[inline(always)]
pub(crate) fn syscall_abi() -> &'static SyscallAbi {
    // SAFETY: a pointer to a global that lives as long as the program.
    unsafe { &*core::ptr::read_volatile(&(&raw const SYSCALL_ABI)) }
}

#[inline(always)]
pub(crate) fn self_tgid() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const SELF_TGID) }
}

#[inline(always)]
pub(crate) fn snaplen() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const SNAPLEN) }
}

#[inline(always)]
pub(crate) fn filters() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const FILTERS) }
}

#[inline(always)]
pub(crate) fn type_mask() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const TYPE_MASK) }
}

#[inline(always)]
pub(crate) fn wakeup_bytes() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const WAKEUP_BYTES) }
}

#[inline(always)]
pub(crate) fn use_task_pt_regs() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const USE_TASK_PT_REGS) != 0 }
}

/// Whether `tgid` is in `PID_LIST` (compared with each entry: the verifier sees the values).
#[inline(always)]
#[allow(
    clippy::manual_contains,
    reason = "eight comparisons the compiler unrolls in place; a slice search may be an \
              out-of-line function, which a BPF program would have to call"
)]
pub(crate) fn pid_listed(tgid: u32) -> bool {
    // SAFETY: as for the layout.
    let list = unsafe { &*core::ptr::read_volatile(&(&raw const PID_LIST)) };
    list.iter().any(|&pid| pid == tgid)
}
