//! What the programs keep per socket (`SOCKETS`): its byte offsets, the process last seen
//! using it, its credentials' process; one lookup per message.

use crate::maps::{SockState, SOCKETS, SOCKET_START};

/// The state of socket `sk`, whose inode is `ino`: the one kept, or a new one (all zeroes)
/// when there is none or it was a closed socket's whose memory `sk` now has. `None` only if
/// the map refuses the insert.
#[inline(always)]
pub(crate) fn state(sk: u64, ino: u64) -> Option<&'static mut SockState> {
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
