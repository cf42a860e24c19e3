//! Reads of kernel objects at the offsets userspace found in the running kernel's BTF.

use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_uid_gid, bpf_probe_read_kernel, bpf_probe_read_user, generated,
};
use udstrace_common::{
    filter::PathKey,
    record::{COMM_LEN, PATH_MAX, SYSCALL_COMPAT},
    KernelLayout, SendRecord,
};

use crate::config;

/// `AF_UNIX`.
pub(crate) const AF_UNIX: u16 = 1;

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub(crate) fn read<T>(base: u64, offset: u32) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel validates the address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T).map_err(i64::from) }
}

/// Reads a `T` at `at` in the current task's user memory.
#[inline(always)]
pub(crate) fn read_user<T>(at: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_user validates the address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_user(at as *const T).map_err(i64::from) }
}

/// A buffer in kernel or user memory: where a message's destination address or control data
/// is.
#[derive(Clone, Copy)]
pub(crate) struct Mem {
    pub(crate) ptr: u64,
    pub(crate) len: u64,
    pub(crate) kernel: bool,
}

impl Mem {
    /// No buffer.
    pub(crate) const NONE: Self = Self {
        ptr: 0,
        len: 0,
        kernel: true,
    };

    /// `len` bytes at `ptr` in the current task's user memory.
    #[inline(always)]
    pub(crate) const fn user(ptr: u64, len: u64) -> Self {
        Self {
            ptr,
            len,
            kernel: false,
        }
    }

    /// `len` bytes at `ptr` in kernel memory.
    #[inline(always)]
    pub(crate) const fn in_kernel(ptr: u64, len: u64) -> Self {
        Self {
            ptr,
            len,
            kernel: true,
        }
    }

    /// Reads a `T` at address `at` (inside the buffer) with the helper its memory needs.
    #[inline(always)]
    pub(crate) fn read<T>(self, at: u64) -> Result<T, i64> {
        if self.kernel {
            read::<T>(at, 0)
        } else {
            read_user::<T>(at)
        }
    }

    /// Copies `n` bytes at address `at` to `dst`; 0 or a negative errno.
    ///
    /// # Safety
    /// `dst` must have room for `n` bytes.
    #[inline(always)]
    pub(crate) unsafe fn copy(self, at: u64, dst: *mut c_void, n: u32) -> i64 {
        let from = at as *const c_void;
        // SAFETY: the caller vouches for `dst`; the helpers check the source.
        unsafe {
            if self.kernel {
                generated::bpf_probe_read_kernel(dst, n, from)
            } else {
                generated::bpf_probe_read_user(dst, n, from)
            }
        }
    }
}

/// A task's command name (`TASK_COMM_LEN` bytes, NUL padded) as two words: copied and
/// compared with two loads where a `[u8; 16]` takes sixteen (the BPF backend moves byte
/// arrays byte by byte).
pub(crate) type Comm = [u64; 2];

/// The words of command name `c`, 8-byte aligned (every `[u8; 16]` name the programs hold
/// is: see the assertions below).
#[inline(always)]
#[allow(
    clippy::cast_ptr_alignment,
    reason = "every name passed is 8-byte aligned: asserted below"
)]
pub(crate) fn comm_words(c: &[u8; COMM_LEN]) -> Comm {
    // SAFETY: 16 bytes, 8-byte aligned (the caller's field is; asserted for each).
    unsafe { c.as_ptr().cast::<Comm>().read() }
}

/// Writes command name `c` into `dst`, 8-byte aligned (as for [`comm_words`]).
#[inline(always)]
#[allow(
    clippy::cast_ptr_alignment,
    reason = "every name passed is 8-byte aligned: asserted below"
)]
pub(crate) fn set_comm(dst: &mut [u8; COMM_LEN], c: Comm) {
    // SAFETY: as in `comm_words`.
    store_comm(unsafe { &mut *dst.as_mut_ptr().cast::<Comm>() }, c);
}

/// Stores command name `c` in `dst`, as two volatile word stores: LLVM turns a plain load and
/// store of the words into a call of a byte-by-byte `memmove`.
#[inline(always)]
pub(crate) fn store_comm(dst: &mut Comm, c: Comm) {
    // SAFETY: stores to the two words of `dst`.
    unsafe {
        core::ptr::write_volatile(&raw mut dst[0], c[0]);
        core::ptr::write_volatile(&raw mut dst[1], c[1]);
    }
}

// The names `comm_words` and `set_comm` see: the record's two (inside `Scratch`, whose
// header starts 8-byte aligned).
const _: () = assert!(core::mem::offset_of!(SendRecord, comm) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(SendRecord, receiver_comm) % 8 == 0);

/// The current task's command name (zeroes if it cannot be read).
#[inline(always)]
pub(crate) fn current_comm() -> Comm {
    let mut comm = core::mem::MaybeUninit::<Comm>::uninit();
    // SAFETY: the helper writes at most COMM_LEN bytes (the two words) into `comm`, left
    // uninitialised: a name zeroed first is zeroed by LLVM with a byte-by-byte `memset`.
    let rc = unsafe {
        generated::bpf_get_current_comm(comm.as_mut_ptr().cast::<c_void>(), COMM_LEN as u32)
    };
    if rc == 0 {
        // SAFETY: written by the helper.
        unsafe { comm.assume_init() }
    } else {
        [0; 2]
    }
}

/// Who is sending (or receiving): the current task's user and group ids, command name and
/// cgroup (v2) id, as `bpf_get_current_uid_gid()`, `bpf_get_current_comm()` and
/// `bpf_get_current_cgroup_id()` give them.
///
/// A hook reads it before it branches on the system call, once on every path: through
/// BTF-typed pointers, each pointer the verifier sees loaded from the task costs it a search
/// of the kernel's BTF by name, repeated for every path it walks to the load (a third of
/// `sock_send_length`'s verification when the task was read in the record).
#[derive(Clone, Copy)]
pub(crate) struct Task {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) comm: Comm,
    pub(crate) cgroup_id: u64,
}

impl Task {
    /// Writes it into `header`.
    #[inline(always)]
    pub(crate) fn fill(self, header: &mut SendRecord) {
        header.uid = self.uid;
        header.gid = self.gid;
        set_comm(&mut header.comm, self.comm);
        header.cgroup_id = self.cgroup_id;
    }
}

/// How a program reads the kernel's objects.
///
/// [`Probe`] calls `bpf_probe_read_kernel`, which takes any address: the kprobe programs', and
/// the function hooks' (their pointers come from reads the verifier does not type). [`Btf`]
/// loads through pointers whose BTF type the verifier tracks (the `struct sock` a tp_btf
/// program receives, and the pointers read through it): a plain load of about 1 ns where the
/// helper costs 25-80, and a fault reads as zero. The verifier refuses such a load through
/// a number, so `Btf` is only for chains that start at a typed pointer.
pub(crate) trait Reader {
    /// Whether this reader loads through typed pointers (a hook then hands on the typed
    /// pointer it has rather than a number it kept).
    const TYPED: bool;

    /// Reads a `T` at `base + offset`, `base` an object of the kernel.
    fn read<T>(base: u64, offset: u32) -> Result<T, i64>;

    /// The `struct unix_sock` of Unix socket `sk` (the same address), as a pointer this
    /// reader can read its fields through; 0 when it cannot.
    fn unix_sock(sk: u64) -> u64;

    /// Inode number of the `struct socket` Unix socket `u` (a [`Self::unix_sock`]) belongs to,
    /// 0 when it has none (an orphaned peer).
    fn sock_ino(u: u64, layout: &KernelLayout) -> u64;

    /// The current task (see [`Task`]).
    fn current_task(layout: &KernelLayout) -> Task;
}

/// `bpf_probe_read_kernel` (see [`Reader`]).
pub(crate) struct Probe;

/// Loads through BTF-typed pointers (see [`Reader`]).
pub(crate) struct Btf;

impl Reader for Probe {
    const TYPED: bool = false;

    #[inline(always)]
    fn read<T>(base: u64, offset: u32) -> Result<T, i64> {
        read(base, offset)
    }

    #[inline(always)]
    fn unix_sock(sk: u64) -> u64 {
        sk
    }

    /// `SOCK_INODE()`: the inode that follows the `struct socket` in its `socket_alloc`.
    #[inline(always)]
    fn sock_ino(u: u64, layout: &KernelLayout) -> u64 {
        let Ok(socket) = read::<u64>(u, layout.sock_socket) else {
            return 0;
        };
        if socket == 0 {
            return 0;
        }
        read::<u64>(socket + u64::from(layout.socket_inode), layout.inode_ino).unwrap_or(0)
    }

    #[inline(always)]
    fn current_task(_: &KernelLayout) -> Task {
        let uid_gid = bpf_get_current_uid_gid();
        Task {
            uid: uid_gid as u32,
            gid: (uid_gid >> 32) as u32,
            comm: current_comm(),
            // SAFETY: a helper with no arguments (4.18+).
            cgroup_id: unsafe { generated::bpf_get_current_cgroup_id() },
        }
    }
}

impl Reader for Btf {
    const TYPED: bool = true;

    #[inline(always)]
    fn read<T>(base: u64, offset: u32) -> Result<T, i64> {
        // SAFETY: the verifier admits the load only through a typed pointer and at an offset
        // inside the type's field; the kernel turns a fault into zero.
        Ok(unsafe { core::ptr::read_volatile((base + u64::from(offset)) as *const T) })
    }

    #[inline(always)]
    fn unix_sock(sk: u64) -> u64 {
        // The fields of `struct unix_sock` lie past the `struct sock` the pointer is typed
        // as, where the verifier refuses loads: the helper retypes it (5.16+; NULL for any
        // other family).
        // SAFETY: a helper that checks its argument.
        unsafe { generated::bpf_skc_to_unix_sock(sk as *mut c_void) as u64 }
    }

    /// Through the socket's file: `SOCK_INODE()` lies past the `struct socket`, out of the
    /// verifier's reach, and a socket's file points at that inode.
    #[inline(always)]
    fn sock_ino(u: u64, layout: &KernelLayout) -> u64 {
        let file = follow(follow(u, layout.sock_socket), layout.socket_file);
        follow(follow(file, layout.file_inode), layout.inode_ino)
    }

    /// What the helpers read, loaded from the current task: `cred->uid`, `cred->gid` (the
    /// helper maps them into the initial user namespace, where they are the same numbers),
    /// `comm`, `cgroups->dfl_cgrp->kn->id`. Three helper calls less, and the cgroup's takes
    /// and releases the RCU read lock (two more calls on a preemptible kernel).
    #[inline(always)]
    fn current_task(layout: &KernelLayout) -> Task {
        Self::task(Self::current(), layout)
    }
}

impl Btf {
    /// The current task, typed (5.11+). A hook that needs it more than once (its fields,
    /// its registers) calls this once: every helper call costs its return (under the SRSO
    /// mitigation of AMD processors, a return thunk).
    #[inline(always)]
    pub(crate) fn current() -> u64 {
        // SAFETY: a helper with no arguments.
        unsafe { generated::bpf_get_current_task_btf() as u64 }
    }

    /// What `bpf_get_current_pid_tgid()` returns (the process id above the thread's), loaded
    /// from `task`, the current task as [`Self::current`] gives it: one helper call less.
    #[inline(always)]
    pub(crate) fn pid_tgid(task: u64, layout: &KernelLayout) -> u64 {
        let id = |offset| u64::from(Self::read::<u32>(task, offset).unwrap_or(0));
        (id(layout.task_tgid) << 32) | id(layout.task_pid)
    }

    /// [`Reader::current_task`], of `task`, the current task as [`Self::current`] gives it.
    #[inline(always)]
    pub(crate) fn task(task: u64, layout: &KernelLayout) -> Task {
        let cred = follow(task, layout.task_cred);
        let (uid, gid) = if cred == 0 {
            (0, 0)
        } else {
            (
                Self::read::<u32>(cred, layout.cred_uid).unwrap_or(0),
                Self::read::<u32>(cred, layout.cred_gid).unwrap_or(0),
            )
        };
        let cgroup = follow(follow(task, layout.task_cgroups), layout.css_set_dfl_cgrp);
        Task {
            uid,
            gid,
            comm: Self::read::<Comm>(task, layout.task_comm).unwrap_or([0; 2]),
            cgroup_id: follow(follow(cgroup, layout.cgroup_kn), layout.kernfs_node_id),
        }
    }
}

/// The pointer (or number) at `base + offset`, through a typed pointer `base`; 0 when `base`
/// is 0, so that a chain of them stops at the first null.
#[inline(always)]
fn follow(base: u64, offset: u32) -> u64 {
    if base == 0 {
        0
    } else {
        Btf::read::<u64>(base, offset).unwrap_or(0)
    }
}

/// The type of socket `sk` if it is a Unix socket (one read only for the others).
#[inline(always)]
pub(crate) fn unix_sock_type<R: Reader>(sk: u64, layout: &KernelLayout) -> Option<u16> {
    if R::read::<u16>(sk, layout.sock_family) != Ok(AF_UNIX) {
        return None;
    }
    R::read(sk, layout.sock_type).ok()
}

/// The connected peer of Unix socket `u` (a [`Reader::unix_sock`]), 0 when there is none.
#[inline(always)]
pub(crate) fn unix_peer<R: Reader>(u: u64, layout: &KernelLayout) -> u64 {
    if u == 0 {
        return 0;
    }
    R::read::<u64>(u, layout.unix_peer).unwrap_or(0)
}

/// The file Unix socket `u` (a [`Reader::unix_sock`]) is bound to (an accepted socket: its
/// listener's), as device and inode; `None` for a socket bound to no file (unbound, or an
/// abstract name).
#[inline(always)]
pub(crate) fn unix_file<R: Reader>(u: u64, layout: &KernelLayout) -> Option<PathKey> {
    if u == 0 {
        return None;
    }
    let dentry = R::read::<u64>(u, layout.unix_path_dentry).ok()?;
    if dentry == 0 {
        return None;
    }
    let inode = R::read::<u64>(dentry, layout.dentry_inode).ok()?;
    if inode == 0 {
        return None;
    }
    let sb = R::read::<u64>(inode, layout.inode_sb).ok()?;
    if sb == 0 {
        return None;
    }
    Some(PathKey {
        dev: R::read::<u32>(sb, layout.sb_dev).ok()?,
        pad: 0,
        ino: R::read::<u64>(inode, layout.inode_ino).ok()?,
    })
}

/// Bytes past a name's `PATH_MAX` the verifier may see a copy write (see `unix_path`).
pub(crate) const NAME_SLACK: usize = 128 - PATH_MAX;

/// Copies the bound name of Unix socket `u` (a [`Reader::unix_sock`]: its `sun_path`,
/// abstract names with their leading NUL) into `dst`; returns how many bytes it holds, 0 for
/// an unbound socket.
#[inline(always)]
pub(crate) fn unix_path<R: Reader>(u: u64, layout: &KernelLayout, dst: &mut [u8; PATH_MAX]) -> u16 {
    if u == 0 {
        return 0;
    }
    let Ok(addr) = R::read::<u64>(u, layout.unix_addr) else {
        return 0;
    };
    if addr == 0 {
        return 0;
    }
    let Ok(len) = R::read::<i32>(addr, layout.unix_address_len) else {
        return 0;
    };
    // `len` counts sun_family (2 bytes) and the path.
    let mut n = i64::from(len) - 2;
    if n <= 0 {
        return 0;
    }
    let max = (PATH_MAX as u64).cast_signed();
    if n > max {
        n = max;
    }
    // As for a destination address (`record::dest_path`): the bound, masked into the value
    // passed. The verifier allows for 127 bytes: `dst` must have [`NAME_SLACK`] bytes of room
    // after it (the record's names do; a name read onto the stack needs `NameOnStack`).
    // SAFETY: a read of a local.
    let n = unsafe { core::ptr::read_volatile(&raw const n) }.cast_unsigned() & 0x7f;
    let src = addr + u64::from(layout.unix_address_name) + 2;
    // SAFETY: dst is PATH_MAX bytes and n <= PATH_MAX; the source is checked by the helper.
    let rc = unsafe {
        generated::bpf_probe_read_kernel(
            dst.as_mut_ptr().cast::<c_void>(),
            n as u32,
            src as *const c_void,
        )
    };
    if rc != 0 {
        return 0;
    }
    n as u16
}

/// The kernel address of a page's bytes (`page_address()` on x86_64 and arm64: the page's
/// index in the `vmemmap` array, as an offset into the direct map).
#[inline(always)]
pub(crate) fn page_address(page: u64) -> Result<u64, i64> {
    // Written by userspace before any program was attached.
    let Some(&map) = crate::maps::DIRECT_MAP.get(0) else {
        return Err(-1);
    };
    if map.page_size == 0 {
        return Err(-1);
    }
    let base = |addr: u64, fixed: u64| {
        if addr == 0 {
            Ok(fixed)
        } else {
            read::<u64>(addr, 0)
        }
    };
    let direct = base(map.page_offset_base_addr, map.page_offset_base)?;
    let vmemmap = base(map.vmemmap_base_addr, map.vmemmap_base)?;
    let stride = u64::from(config::layout().page_struct_size);
    if stride == 0 || page < vmemmap {
        return Err(-1);
    }
    Ok(direct + (page - vmemmap) / stride * map.page_size)
}

/// The system call number saved in the user registers at `regs` (the architecture's own
/// numbering), or `SYSCALL_COMPAT` for a 32-bit task, whose numbers are another table.
#[inline(always)]
pub(crate) fn regs_syscall<R: Reader>(regs: u64) -> Result<i64, i64> {
    let abi = config::syscall_abi();
    let mode = R::read::<u64>(regs, abi.compat_reg as u32)?;
    if mode & abi.compat_mask == abi.compat_value {
        return Ok(i64::from(SYSCALL_COMPAT));
    }
    // A load of the field's own size: arm64's `syscallno` is an s32, and the verifier refuses
    // a typed load that runs past a field (the helper did not mind).
    let at = config::layout().regs_syscall_nr;
    if abi.nr_size == 4 {
        Ok(i64::from(R::read::<i32>(regs, at)?))
    } else {
        R::read::<i64>(regs, at)
    }
}

/// The number of the system call the current task is in (see [`regs_syscall`]), -1 if none
/// can be read.
#[inline(always)]
pub(crate) fn current_syscall() -> i64 {
    let layout = config::layout();
    let regs = if config::use_task_pt_regs() {
        // SAFETY: helpers that return the current task and its saved user registers (5.15+;
        // the branch is pruned by the verifier on older kernels: the flag is read-only data).
        unsafe {
            generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()).cast_unsigned()
        }
    } else {
        // task_pt_regs(): the registers sit at the top of the task's kernel stack.
        // SAFETY: a helper with no arguments.
        let task = unsafe { generated::bpf_get_current_task() };
        let Ok(stack) = read::<u64>(task, layout.task_stack) else {
            return -1;
        };
        stack + u64::from(layout.thread_size) - u64::from(layout.regs_size)
    };
    regs_syscall::<Probe>(regs).unwrap_or(-1)
}
