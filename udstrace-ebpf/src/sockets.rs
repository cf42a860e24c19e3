//! What the programs keep per socket (`SockState`): its byte offsets, the process last seen
//! using it, its credentials' process; one lookup per message, and one of its peer's.
//!
//! Programs that hold the socket as a BTF-typed pointer (`Reader::TYPED`: tp_btf, and fexit
//! on kernels with `bpf_loop`, 5.17+) keep it in the socket itself (`SOCK_STORAGE`,
//! `bpf_sk_storage_get`, allowed in such programs since 5.11): a look at the socket's storage
//! cache where a hash map hashes the key and walks a bucket, 32-43 ns less per message here;
//! and the state goes with the socket when it is freed, so it is never a closed socket's. The
//! others (kprobe, fexit before 5.17, whose socket is a number) keep it in `SOCKETS`, an LRU
//! hash map keyed by the socket's address and checked against its inode.

use core::ffi::c_void;

use aya_ebpf::helpers::generated;

use crate::{
    kernel::Reader,
    maps::{SockState, SOCKETS, SOCKET_START, SOCK_STORAGE},
};

/// `BPF_SK_STORAGE_GET_F_CREATE` (include/uapi/linux/bpf.h).
const CREATE: u64 = 1;

/// The state of socket `sk`, whose inode is `ino`: the one kept, or a new one (all zeroes)
/// when there is none (in `SOCKETS`: or it was a closed socket's whose memory `sk` now has).
/// `None` only if the kernel refuses to make one.
#[inline(always)]
pub(crate) fn state<R: Reader>(sk: u64, ino: u64) -> Option<&'static mut SockState> {
    if R::TYPED {
        return in_socket(sk, CREATE);
    }
    if let Some(kept) = SOCKETS.get_ptr_mut(sk) {
        // SAFETY: a map value; LRU entries are not freed under a running program.
        let kept = unsafe { &mut *kept };
        if kept.ino == ino {
            return Some(kept);
        }
    }
    // SAFETY: a pointer to a global that lives as long as the program, read through a
    // volatile load so that the compiler does not copy its zeroes onto the stack.
    let start = unsafe { &*core::ptr::read_volatile(&(&raw const SOCKET_START)) };
    SOCKETS.insert(sk, start, 0).ok()?;
    // SAFETY: as above.
    let new = unsafe { &mut *SOCKETS.get_ptr_mut(sk)? };
    new.ino = ino;
    Some(new)
}

/// The state kept for socket `sk` (whose inode is `ino`), if there is one; none is made.
/// Another CPU may be changing it: at worst it names the previous user.
#[inline(always)]
pub(crate) fn kept<R: Reader>(sk: u64, ino: u64) -> Option<&'static SockState> {
    if R::TYPED {
        return in_socket(sk, 0).map(|s| &*s);
    }
    // SAFETY: a map value; LRU entries are not freed under a running program.
    unsafe { SOCKETS.get(sk) }.filter(|kept| kept.ino == ino)
}

/// The state in socket `sk`'s own storage (a BTF-typed pointer, as the helper requires), made
/// (zeroed) if `flags` is `CREATE` and there is none.
#[inline(always)]
fn in_socket(sk: u64, flags: u64) -> Option<&'static mut SockState> {
    // SAFETY: the helper checks the socket (NULL, or not a full socket: no storage) and
    // returns NULL or a value of the map's type, alive while the program runs (RCU).
    unsafe {
        generated::bpf_sk_storage_get(
            (&raw const SOCK_STORAGE).cast_mut().cast::<c_void>(),
            sk as *mut c_void,
            core::ptr::null_mut(),
            flags,
        )
        .cast::<SockState>()
        .as_mut()
    }
}

/// Where a message of `len` bytes starts in the socket's stream of bytes sent (or received,
/// `recv`), counting it.
///
/// Not an atomic fetch-add: that needs `BPF_FETCH` (5.12+); two threads sending on the same
/// socket at the same instant on two CPUs can race here, as their bytes interleave
/// unpredictably in the kernel's queue anyway.
#[inline(always)]
pub(crate) fn next_offset(state: &mut SockState, len: u64, recv: bool) -> u64 {
    let next = if recv {
        &mut state.received
    } else {
        &mut state.sent
    };
    let start = *next;
    *next = start + len;
    start
}
