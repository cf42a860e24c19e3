//! Offsets of the kernel fields the programs read.
//!
//! Rust eBPF objects carry no CO-RE relocations, so no offset is compiled in: userspace reads
//! each one from the running kernel's BTF and hands the whole table to the programs as the
//! global `LAYOUT` before they are loaded. Every offset is in bytes from the start of the
//! named struct.

/// Field offsets of the running kernel, filled in from its BTF by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    /// `struct sock` -> `__sk_common.skc_family` (u16).
    pub sock_family: u32,
    /// `struct sock` -> `sk_type` (u16).
    pub sock_type: u32,
    /// `struct sock` -> `sk_socket` (`struct socket *`).
    pub sock_socket: u32,
    /// `struct socket` -> the `struct inode` of its `struct socket_alloc`
    /// (`offsetof(socket_alloc, vfs_inode) - offsetof(socket_alloc, socket)`).
    pub socket_inode: u32,
    /// `struct inode` -> `i_ino` (unsigned long).
    pub inode_ino: u32,
    /// `struct unix_sock` -> `addr` (`struct unix_address *`).
    pub unix_addr: u32,
    /// `struct unix_sock` -> `peer` (`struct sock *`).
    pub unix_peer: u32,
    /// `struct unix_address` -> `len` (int, bytes of `name` in use).
    pub unix_address_len: u32,
    /// `struct unix_address` -> `name` (`struct sockaddr_un`).
    pub unix_address_name: u32,
    /// `struct pt_regs` -> the saved system call number (`orig_ax` on x86_64, `syscallno` on
    /// arm64: the members come from the per-architecture table).
    pub regs_syscall_nr: u32,
    /// `struct pt_regs` -> the six system call argument registers
    /// (`di`, `si`, `dx`, `r10`, `r8`, `r9` on x86_64; `orig_x0`, `regs[1]`..`regs[5]` on arm64).
    pub regs_args: [u32; 6],

    /// `struct socket` -> `sk` (`struct sock *`).
    pub socket_sk: u32,
    /// `struct msghdr` -> `msg_iter` (`struct iov_iter`).
    pub msghdr_iter: u32,
    /// `struct iov_iter` -> its kind: `iter_type` (u8, 5.14+) or `type` (unsigned int, with the
    /// direction in bit 0, before 5.14).
    pub iter_type: u32,
    /// Size of that field in bytes: 1 or 4.
    pub iter_type_size: u32,
    /// Bits of that field that hold the kind.
    pub iter_type_mask: u32,
    /// `enum iter_type` values: `ITER_UBUF` (6.0+; [`KernelLayout::NO_KIND`] before),
    /// `ITER_IOVEC`, `ITER_KVEC`, `ITER_BVEC`.
    pub iter_ubuf: u32,
    pub iter_iovec: u32,
    pub iter_kvec: u32,
    pub iter_bvec: u32,
    /// `struct iov_iter` -> `iov_offset` (size_t: bytes already consumed of the first segment).
    pub iter_offset: u32,
    /// `struct iov_iter` -> `count` (size_t: bytes left).
    pub iter_count: u32,
    /// `struct iov_iter` -> the union of `ubuf`, `iov`/`__iov`, `kvec`, `bvec` (one pointer).
    pub iter_ptr: u32,
    /// `struct iov_iter` -> `nr_segs` (unsigned long).
    pub iter_nr_segs: u32,
    /// `struct bio_vec` -> `bv_page`, `bv_len`, `bv_offset`, and its size.
    pub bvec_page: u32,
    pub bvec_len: u32,
    pub bvec_offset: u32,
    pub bvec_size: u32,
    /// `sizeof(struct page)`: the stride of the `vmemmap` array.
    pub page_struct_size: u32,
    /// `struct task_struct` -> `stack` (the kernel stack, at whose top the saved user
    /// registers are).
    pub task_stack: u32,
    /// `THREAD_SIZE`: the kernel stack's size.
    pub thread_size: u32,
    /// `sizeof(struct pt_regs)`.
    pub regs_size: u32,
    /// `struct task_struct` -> `tgid` (pid_t).
    pub task_tgid: u32,
    /// `struct task_struct` -> `pid` (pid_t: the thread's id).
    pub task_pid: u32,

    /// `struct msghdr` -> `msg_name` (the kernel's copy of the destination address),
    /// `msg_namelen` (int), `msg_control` (the kernel's copy of the control data by the time
    /// a protocol's sendmsg runs), `msg_controllen` (size_t).
    pub msghdr_name: u32,
    pub msghdr_namelen: u32,
    pub msghdr_control: u32,
    pub msghdr_controllen: u32,
    /// `struct task_struct` -> `files`; `struct files_struct` -> `fdt`; `struct fdtable` ->
    /// `max_fds` (unsigned int), `fd` (`struct file **`).
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    /// `struct file` -> `f_inode`, `f_path.dentry`.
    pub file_inode: u32,
    pub file_dentry: u32,
    /// `struct dentry` -> `d_name.name` (`const unsigned char *`), `d_parent`.
    pub dentry_name: u32,
    pub dentry_parent: u32,
    /// `struct inode` -> `i_mode` (umode_t, u16), `i_sb`; `struct super_block` -> `s_dev`.
    pub inode_mode: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,

    /// `struct sock` -> `sk_peer_pid` (`struct pid *`, the peer credentials' process).
    pub sock_peer_pid: u32,
    /// `struct pid` -> `tasks[PIDTYPE_TGID]` (`struct hlist_head`: the process's leader).
    pub pid_tgid_tasks: u32,
    /// `struct task_struct` -> `pid_links[PIDTYPE_TGID]` (the `struct hlist_node` that list
    /// links).
    pub task_tgid_link: u32,
    /// `struct task_struct` -> `comm`, `cgroups` (`struct css_set *`); `struct css_set` ->
    /// `dfl_cgrp`; `struct cgroup` -> `kn`; `struct kernfs_node` -> `id` (u64: the cgroup id).
    pub task_comm: u32,
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// `struct cgroup` -> `root` (`struct cgroup_root *`: which hierarchy it belongs to).
    pub cgroup_root: u32,

    /// `struct unix_sock` -> `path.dentry` (the bound file's dentry; an accepted socket has
    /// its listener's); `struct dentry` -> `d_inode`.
    pub unix_path_dentry: u32,
    pub dentry_inode: u32,
    /// `struct socket` -> `file` (`struct file *`: the socket's file, whose `f_inode` is the
    /// socket's inode).
    pub socket_file: u32,
    /// `struct task_struct` -> `cred` (`const struct cred *`: the task's effective
    /// credentials); `struct cred` -> `uid`, `gid` (`kuid_t`, `kgid_t`: one u32 each).
    pub task_cred: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
}

impl KernelLayout {
    /// An `enum iter_type` value this kernel does not have.
    pub const NO_KIND: u32 = u32::MAX;

    /// All zeroes: the placeholder the kernel object is built with.
    pub const ZERO: Self = Self {
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
        regs_args: [0; 6],
        socket_sk: 0,
        msghdr_iter: 0,
        iter_type: 0,
        iter_type_size: 0,
        iter_type_mask: 0,
        iter_ubuf: 0,
        iter_iovec: 0,
        iter_kvec: 0,
        iter_bvec: 0,
        iter_offset: 0,
        iter_count: 0,
        iter_ptr: 0,
        iter_nr_segs: 0,
        bvec_page: 0,
        bvec_len: 0,
        bvec_offset: 0,
        bvec_size: 0,
        page_struct_size: 0,
        task_stack: 0,
        thread_size: 0,
        regs_size: 0,
        task_tgid: 0,
        task_pid: 0,
        msghdr_name: 0,
        msghdr_namelen: 0,
        msghdr_control: 0,
        msghdr_controllen: 0,
        task_files: 0,
        files_fdt: 0,
        fdtable_max_fds: 0,
        fdtable_fd: 0,
        file_inode: 0,
        file_dentry: 0,
        dentry_name: 0,
        dentry_parent: 0,
        inode_mode: 0,
        inode_sb: 0,
        sb_dev: 0,
        sock_peer_pid: 0,
        pid_tgid_tasks: 0,
        task_tgid_link: 0,
        task_comm: 0,
        task_cgroups: 0,
        css_set_dfl_cgrp: 0,
        cgroup_kn: 0,
        kernfs_node_id: 0,
        cgroup_root: 0,
        unix_path_dentry: 0,
        dentry_inode: 0,
        socket_file: 0,
        task_cred: 0,
        cred_uid: 0,
        cred_gid: 0,
    };
}

/// Where the kernel's direct map and `struct page` array are, so that the programs can read a
/// page's bytes (`page_address()`: the page's index in the array, as pages into the direct
/// map): each is the address of the kernel variable holding the base when the layout is
/// randomised (x86_64's `page_offset_base`, `vmemmap_base` in `/proc/kallsyms`), else 0 and the
/// fixed base is given (arm64's `PAGE_OFFSET` and `VMEMMAP_START`). `page_size` is the
/// kernel's page size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectMap {
    pub page_offset_base_addr: u64,
    pub page_offset_base: u64,
    pub vmemmap_base_addr: u64,
    pub vmemmap_base: u64,
    pub page_size: u64,
}

impl DirectMap {
    pub const ZERO: Self = Self {
        page_offset_base_addr: 0,
        page_offset_base: 0,
        vmemmap_base_addr: 0,
        vmemmap_base: 0,
        page_size: 0,
    };
}

#[cfg(feature = "user")]
// SAFETY: u64 fields only: no padding, every bit pattern valid.
unsafe impl aya::Pod for DirectMap {}

/// The system call ABI of the running architecture, from udstrace's per-architecture table:
/// the numbers of the calls the tracepoint backend decodes, how wide the saved number is, and
/// how a 32-bit (compat) task is told apart (its calls have other numbers and another
/// `msghdr`, so they are not decoded).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallAbi {
    pub read: i64,
    pub write: i64,
    pub readv: i64,
    pub writev: i64,
    pub sendto: i64,
    pub recvfrom: i64,
    pub sendmsg: i64,
    pub recvmsg: i64,
    pub preadv: i64,
    pub pwritev: i64,
    pub sendmmsg: i64,
    pub preadv2: i64,
    pub pwritev2: i64,
    /// Bytes of the saved system call number (8: `orig_ax` on x86_64; 4: the `s32
    /// syscallno` on arm64), read little-endian and sign-extended.
    pub nr_size: u64,
    /// `struct pt_regs` offset of the register that tells a 32-bit task (`cs` on x86_64,
    /// `pstate` on arm64), and the bits of it that say so: `(reg & mask) == value`.
    pub compat_reg: u64,
    pub compat_mask: u64,
    pub compat_value: u64,
}

impl SyscallAbi {
    /// No call matches (-1 is never a system call the programs see).
    pub const ZERO: Self = Self {
        read: -1,
        write: -1,
        readv: -1,
        writev: -1,
        sendto: -1,
        recvfrom: -1,
        sendmsg: -1,
        recvmsg: -1,
        preadv: -1,
        pwritev: -1,
        sendmmsg: -1,
        preadv2: -1,
        pwritev2: -1,
        nr_size: 8,
        compat_reg: 0,
        compat_mask: 0,
        compat_value: 1,
    };
}

#[cfg(feature = "user")]
// SAFETY: i64 and u64 fields only: no padding, every bit pattern valid.
unsafe impl aya::Pod for SyscallAbi {}

#[cfg(feature = "user")]
// SAFETY: plain old data: u32 fields only, so there is no padding and every bit pattern is
// valid.
unsafe impl aya::Pod for KernelLayout {}

const _: () = assert!(core::mem::size_of::<KernelLayout>() == 276);
