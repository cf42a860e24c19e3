//! A message's record header: the `SendRecord` fields its segments share, filled before the copy.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, generated},
    EbpfContext,
};
use udstrace_common::{
    counter,
    record::{flags, KIND_SEND, PATH_MAX, SEGMENT_MAX, SEND_RECORD_LEN},
    KernelLayout, SockType,
};

use crate::{
    ancillary, copy,
    counters::count,
    kernel::{self, Mem, Reader, Task},
    maps::{Scratch, SCRATCH},
    payload::Payload,
    receiver, sockets,
};

/// Records a message of `accepted` bytes sent on socket `sk` (a Unix socket of type
/// `sock_type` the capture wants: the caller checked with [`crate::filter::unix_type`] before
/// looking for the payload, so that other sockets cost as little as possible) from syscall
/// `syscall`, to `dest` (the `struct sockaddr_un` an unconnected datagram was addressed to)
/// when the socket has no peer, with control data `control` (or `Mem::NONE` when its entry
/// sent it already). `ctx` and `cont` (a `COPY_CONTINUE` index, or
/// [`copy::NO_CONTINUATION`]) let the copy go on in a tail call on kernels without
/// `bpf_loop`.
///
/// `task`: the sender (the receiver for a receive), read by the hook before it branched (see
/// [`Task`]); `pid_tgid`: its ids, as the hook got them.
///
/// `R`: how the socket's fields are read (`kernel::Btf` where `sk` is a BTF-typed pointer).
///
/// `LOOP`: copy under `bpf_loop` (5.17+). Programs for older kernels are built with `false`:
/// there a program may not even mention `bpf_loop`, as its callback reference
/// (`BPF_PSEUDO_FUNC`) is an instruction the 5.10 verifier rejects wherever it stands.
#[inline(always)]
#[allow(
    clippy::too_many_arguments,
    reason = "inlined into each hook, its arguments are values the hook already holds in registers"
)]
pub(crate) fn capture_send<const LOOP: bool, R: Reader, C: EbpfContext>(
    ctx: &C,
    cont: u32,
    pid_tgid: u64,
    task: Task,
    sk: u64,
    sock_type: u16,
    accepted: i64,
    syscall: i32,
    payload: Payload,
    dest: Mem,
    control: Mem,
    recv: bool,
    layout: &KernelLayout,
) -> Result<(), i64> {
    let is_stream = sock_type == SockType::Stream as u16;
    // Nothing was sent: an error (EAGAIN, EPIPE, ...) or an empty write on a byte stream
    // (for a receive: end of stream). An empty datagram is a real message and is kept.
    if accepted < 0 || (accepted == 0 && is_stream) {
        return Ok(());
    }
    let msg_len = accepted.cast_unsigned();
    if control.ptr != 0 {
        ancillary::emit(sk, control);
    }

    // SAFETY: a helper with no arguments.
    let cpu = unsafe { generated::bpf_get_smp_processor_id() };
    let scratch: *mut Scratch = SCRATCH.get_ptr_mut(cpu).ok_or(-1i64)?;
    // The slot belongs to this CPU while the program runs: tracepoint and kprobe programs
    // run with preemption disabled; trampoline programs only with migration disabled, so on
    // a fully preemptible kernel another task on this CPU could come in while a copy is
    // under way. That message is counted as lost rather than mixed into the slot.
    // SAFETY: this CPU's slot.
    if unsafe { (*scratch).copy.busy } != 0 {
        count(
            counter::LOST_SEGMENTS,
            msg_len.div_ceil(u64::from(SEGMENT_MAX)).max(1),
        );
        count(counter::LOST_BYTES, msg_len);
        return Ok(());
    }
    // SAFETY: as above.
    let header = unsafe { &mut (*scratch).header };

    header.kind = KIND_SEND;
    header.header_len = SEND_RECORD_LEN as u16;
    // SAFETY: a helper with no arguments.
    header.ts_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    header.pid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    task.fill(header);
    header.sock_type = sock_type;
    header.syscall = syscall;
    header.msg_len = msg_len;
    header.reserved = 0;

    // Every field is read through `u`, not `sk`: a tp_btf or fentry program's `sk` is a
    // trusted pointer, and each pointer the verifier sees loaded through one costs it searches
    // of the kernel's BTF by name, on every path to the load (see `Task`).
    let u = R::unix_sock(sk);
    let ino = R::sock_ino(u, layout);
    header.sock_ino = ino;
    header.path_len = kernel::unix_path::<R>(u, layout, &mut header.path);
    header.sock_id = sk;
    let peer = kernel::unix_peer::<R>(u, layout);
    header.peer_id = peer;
    if peer == 0 {
        header.peer_ino = 0;
        header.peer_path_len = dest_path(dest, &mut header.peer_path);
    } else {
        header.peer_ino = R::sock_ino(peer, layout);
        header.peer_path_len =
            kernel::unix_path::<R>(R::unix_sock(peer), layout, &mut header.peer_path);
    }
    // The socket's byte offset (where this message starts in its stream of bytes sent, or
    // for a receive received), who will read it, and a note of who used the socket.
    let base_offset = if let Some(state) = sockets::state::<R>(sk, ino) {
        let cred = &mut state.cred;
        receiver::find::<R>(
            u,
            peer,
            header.peer_ino,
            header.ts_boot_ns,
            Some(cred),
            layout,
        )
        .fill(header);
        receiver::note(state, header, recv);
        sockets::next_offset(state, msg_len, recv)
    } else {
        receiver::find::<R>(u, peer, header.peer_ino, header.ts_boot_ns, None, layout).fill(header);
        0
    };

    let base_flags = if recv { flags::RECV } else { 0 };
    copy::copy_segments::<LOOP, C>(ctx, cont, cpu, msg_len, base_offset, base_flags, payload);
    Ok(())
}

const _: () = assert!(PATH_MAX < 128);

/// Copies the name in the destination address `dest` (a `struct sockaddr_un`) into `path`;
/// returns how many bytes it holds, 0 when there is no Unix address.
#[inline(always)]
fn dest_path(dest: Mem, path: &mut [u8; PATH_MAX]) -> u16 {
    // sun_family (u16) and at least one byte of name.
    if dest.ptr == 0 || dest.len <= 2 || dest.read::<u16>(dest.ptr) != Ok(kernel::AF_UNIX) {
        return 0;
    }
    let mut n = dest.len - 2;
    if n > PATH_MAX as u64 {
        n = PATH_MAX as u64;
    }
    // The verifier must see the bound on the register the helper gets, and the compiler may
    // pass a copy spilled before the comparison, without its bound (5.10 and 6.1 rejected such
    // builds): the length is read back opaquely and masked, a bound that is part of the value
    // and survives a spill. n <= PATH_MAX < 128 keeps it whole; the verifier allows for 127
    // bytes, which `peer_path` (followed by the rest of the record) has room for.
    // SAFETY: a read of a local.
    let n = unsafe { core::ptr::read_volatile(&raw const n) } & 0x7f;
    // SAFETY: path is PATH_MAX bytes and n <= PATH_MAX.
    let rc = unsafe { dest.copy(dest.ptr + 2, path.as_mut_ptr().cast::<c_void>(), n as u32) };
    if rc == 0 {
        n as u16
    } else {
        0
    }
}
