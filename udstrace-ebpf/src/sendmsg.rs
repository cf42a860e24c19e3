//! The function-hook backends' shared part: what an entry notes, what the exit records.
//!
//! The fentry/fexit and kprobe/kretprobe backends hook the same send (or, with `--recv`,
//! receive) functions.
//!
//! At entry the message's `struct iov_iter` still describes all of its bytes; by the exit the
//! kernel has consumed part of it. So the entry keeps where the bytes are (per thread), and
//! the exit, which knows how many bytes the kernel accepted, copies that many from there.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, EbpfContext};
use udstrace_common::counter;

use crate::{
    ancillary, config,
    counters::count,
    filter,
    kernel::{self, Btf, Mem, Probe, Reader},
    maps::{SendEntry, SEND_ENTRIES},
    payload::{Payload, SEG_BVEC, SEG_IOVEC, SEG_KBUF, SEG_KVEC, SEG_NONE, SEG_UBUF},
    record,
    syscall::{self, Regs},
};

/// Entry of `unix_{stream,dgram,seqpacket}_sendmsg(struct socket *sock, struct msghdr *msg,
/// size_t len)`.
#[inline(always)]
pub(crate) fn enter_sendmsg(sock: u64, msg: u64) {
    let Some((pid_tgid, sk)) = wanted_sock(sock) else {
        return;
    };
    if nested(pid_tgid, sk, msg) {
        return;
    }
    let layout = config::layout();
    let mut entry = iter_entry(sk, msg).unwrap_or(SendEntry::unreadable(sk, msg));
    // The destination of an unconnected datagram, and the control data: the kernel's copies
    // (made by the system call before the protocol's sendmsg runs), alive until it returns.
    entry.name = kernel::read(msg, layout.msghdr_name).unwrap_or(0);
    entry.name_len = kernel::read(msg, layout.msghdr_namelen).unwrap_or(0);
    let _ = SEND_ENTRIES.insert(pid_tgid, entry, 0);
    let control = Mem::in_kernel(
        kernel::read(msg, layout.msghdr_control).unwrap_or(0),
        kernel::read(msg, layout.msghdr_controllen).unwrap_or(0),
    );
    if control.ptr != 0 && filter::unix_type::<Probe>(sk, layout).is_some() {
        ancillary::emit(sk, control);
    }
}

/// Entry of `unix_{stream,dgram,seqpacket}_recvmsg(struct socket *sock, struct msghdr *msg,
/// size_t size, int flags)` (`--recv`): where the reader's buffers are, to be read once the
/// function has filled them.
#[inline(always)]
pub(crate) fn enter_recvmsg(sock: u64, msg: u64, flags: i32) {
    if flags & syscall::MSG_PEEK != 0 {
        return;
    }
    let Some((pid_tgid, sk)) = wanted_sock(sock) else {
        return;
    };
    if nested(pid_tgid, sk, msg) {
        return;
    }
    let mut entry = iter_entry(sk, msg).unwrap_or(SendEntry::unreadable(sk, msg));
    entry.recv = 1;
    let _ = SEND_ENTRIES.insert(pid_tgid, entry, 0);
}

/// Entry of `unix_stream_sendpage(struct socket *socket, struct page *page, int offset,
/// size_t size, int flags)` (before 6.5: `sendfile` and `splice` to a stream socket).
#[inline(always)]
pub(crate) fn enter_sendpage(sock: u64, page: u64, offset: i32, size: u64) {
    let Some((pid_tgid, sk)) = wanted_sock(sock) else {
        return;
    };
    let (ptr, kind) = match kernel::page_address(page) {
        Ok(addr) => (addr + i64::from(offset).cast_unsigned(), SEG_KBUF),
        Err(_) => (0, SEG_NONE),
    };
    let entry = SendEntry {
        ptr,
        len: size,
        kind,
        ..SendEntry::unreadable(sk, 0)
    };
    let _ = SEND_ENTRIES.insert(pid_tgid, entry, 0);
}

/// The current thread's pid_tgid and the `struct sock` of `sock` (a `struct socket`), when
/// the process is one to capture.
#[inline(always)]
fn wanted_sock(sock: u64) -> Option<(u64, u64)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !filter::wanted((pid_tgid >> 32) as u32) {
        return None;
    }
    let sk = kernel::read::<u64>(sock, config::layout().socket_sk).ok()?;
    Some((pid_tgid, sk))
}

/// True (and counted) when this thread is already inside a hooked function for the same
/// message.
#[inline(always)]
fn nested(pid_tgid: u64, sk: u64, msg: u64) -> bool {
    match SEND_ENTRIES.get_ptr_mut(pid_tgid) {
        Some(outer) => {
            // SAFETY: a map value of this thread's only.
            let outer = unsafe { &mut *outer };
            if outer.sk == sk && outer.msg == msg {
                outer.nested += 1;
                true
            } else {
                // Left over from a call whose return was not seen: replaced, and counted.
                count(counter::MISSED_RETURNS, 1);
                false
            }
        }
        None => false,
    }
}

/// Where the bytes of `msg` are, from its `struct iov_iter`.
#[inline(always)]
fn iter_entry(sk: u64, msg: u64) -> Result<SendEntry, i64> {
    let layout = config::layout();
    let iter = msg + u64::from(layout.msghdr_iter);
    let raw = if layout.iter_type_size == 1 {
        u32::from(kernel::read::<u8>(iter, layout.iter_type)?)
    } else {
        kernel::read::<u32>(iter, layout.iter_type)?
    };
    let kind = raw & layout.iter_type_mask;
    let ptr: u64 = kernel::read(iter, layout.iter_ptr)?;
    let skip: u64 = kernel::read(iter, layout.iter_offset)?;
    let total: u64 = kernel::read(iter, layout.iter_count)?;
    let (kind, len) = if kind == layout.iter_ubuf {
        (SEG_UBUF, kernel::read::<u64>(iter, layout.iter_count)?)
    } else if kind == layout.iter_iovec {
        (SEG_IOVEC, kernel::read::<u64>(iter, layout.iter_nr_segs)?)
    } else if kind == layout.iter_kvec {
        (SEG_KVEC, kernel::read::<u64>(iter, layout.iter_nr_segs)?)
    } else if kind == layout.iter_bvec {
        (SEG_BVEC, kernel::read::<u64>(iter, layout.iter_nr_segs)?)
    } else {
        (SEG_NONE, 0)
    };
    Ok(SendEntry {
        ptr,
        len,
        skip,
        kind,
        total,
        ..SendEntry::unreadable(sk, msg)
    })
}

/// Exit of a hooked function that returned `ret` (bytes accepted, or -errno). `cont`: the
/// `COPY_CONTINUE` index of the program type; `LOOP`: see `record::capture_send`. `R`: how
/// the socket is read; with a typed reader, `typed_sk` is the call's `struct sock` as the
/// hook's typed argument leads to it (the entry's note keeps it as a number only).
#[inline(always)]
pub(crate) fn exit<const LOOP: bool, R: Reader, C: EbpfContext>(
    ctx: &C,
    cont: u32,
    ret: i64,
    typed_sk: u64,
) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(slot) = SEND_ENTRIES.get_ptr_mut(pid_tgid) else {
        return;
    };
    // SAFETY: a map value of this thread's only; copied out before it is removed.
    let entry = unsafe {
        if (*slot).nested != 0 {
            (*slot).nested -= 1;
            return;
        }
        *slot
    };
    let _ = SEND_ENTRIES.remove(pid_tgid);
    let layout = config::layout();
    let sk = if R::TYPED {
        if typed_sk != entry.sk {
            return;
        }
        typed_sk
    } else {
        entry.sk
    };
    let Some(sock_type) = filter::unix_type::<R>(sk, layout) else {
        return;
    };
    // Before the branches below (see `Task`). A typed reader fetches the current task once,
    // for its fields and its registers (each helper call costs its return).
    let (task, syscall) = if R::TYPED {
        let current = Btf::current();
        (
            Btf::task(current, layout),
            Regs::of(current).number().unwrap_or(-1),
        )
    } else {
        (R::current_task(layout), kernel::current_syscall())
    };
    let recv = entry.recv != 0;
    // A datagram longer than the reader's buffers (MSG_TRUNC) returns its full length;
    // the reader got what its buffers hold.
    let ret = if recv && ret > 0 && entry.kind != SEG_NONE && ret.cast_unsigned() > entry.total {
        entry.total.cast_signed()
    } else {
        ret
    };
    let payload = match entry.kind {
        SEG_UBUF => Payload::buf(entry.ptr + entry.skip, entry.len, false),
        SEG_KBUF => Payload::buf(entry.ptr, entry.len, true),
        SEG_IOVEC | SEG_KVEC | SEG_BVEC => {
            Payload::segments(entry.ptr, entry.len, entry.skip, entry.kind)
        }
        _ => Payload::MISSING,
    };
    let _ = record::capture_send::<LOOP, R, C>(
        ctx,
        cont,
        pid_tgid,
        task,
        sk,
        sock_type,
        ret,
        syscall as i32,
        payload,
        Mem::in_kernel(entry.name, u64::from(entry.name_len.cast_unsigned())),
        Mem::NONE,
        recv,
        layout,
    );
}
