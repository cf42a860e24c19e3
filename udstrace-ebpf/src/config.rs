//! Run-time configuration, written by userspace into the object's globals before loading.

use udstrace_common::KernelLayout;

/// Offsets of the kernel fields the programs read, from the running kernel's BTF.
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout {
    sock_family: 0,
    sock_type: 0,
    sock_socket: 0,
    socket_inode: 0,
    inode_ino: 0,
    unix_addr: 0,
    unix_peer: 0,
    unix_address_len: 0,
    unix_address_name: 0,
    regs_syscall_nr: 0,
    regs_args: [0; 4],
};

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

/// Non-zero: the kernel has `bpf_loop` (5.17+).
#[unsafe(no_mangle)]
static USE_BPF_LOOP: u32 = 0;

/// Non-zero: only processes listed in `PID_FILTER` are captured.
#[unsafe(no_mangle)]
static FILTER_PIDS: u32 = 0;

#[inline(always)]
pub fn layout() -> KernelLayout {
    // SAFETY: a global the loader wrote before load; read volatile so the compiler does not
    // fold the zero initialiser.
    unsafe { core::ptr::read_volatile(&raw const LAYOUT) }
}

#[inline(always)]
pub fn self_tgid() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const SELF_TGID) }
}

#[inline(always)]
pub fn snaplen() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const SNAPLEN) }
}

#[inline(always)]
pub fn filter_pids() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const FILTER_PIDS) != 0 }
}

#[inline(always)]
pub fn use_bpf_loop() -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const USE_BPF_LOOP) != 0 }
}

#[inline(always)]
pub fn wakeup_bytes() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const WAKEUP_BYTES) }
}
