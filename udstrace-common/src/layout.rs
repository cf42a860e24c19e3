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
    /// `struct pt_regs` -> `orig_ax` (the system call number).
    pub regs_syscall_nr: u32,
    /// `struct pt_regs` -> the first four system call argument registers
    /// (`di`, `si`, `dx`, `r10` on `x86_64`).
    pub regs_args: [u32; 4],
}

#[cfg(feature = "user")]
// SAFETY: plain old data: u32 fields only, so there is no padding and every bit pattern is
// valid.
unsafe impl aya::Pod for KernelLayout {}

const _: () = assert!(core::mem::size_of::<KernelLayout>() == 56);
