//! What every hook does once it knows a Unix socket accepted bytes: build the records of the
//! message and copy its payload into the ring buffer, segment by segment.

use core::{
    ffi::c_void,
    intrinsics::{atomic_xadd, AtomicOrdering},
};

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns, generated,
    },
    EbpfContext,
};
use udstrace_common::{
    filter,
    record::{flags, KIND_SEND, PATH_MAX, SEGMENT_MAX, SEND_RECORD_LEN},
    KernelLayout, SockType,
};

use crate::{
    ancillary, config,
    kernel::{self, Mem},
    maps::{
        CopyState, Scratch, COMM_FILTER, COPY_CONTINUE, COUNTERS, COUNTER_LOST_BYTES,
        COUNTER_LOST_SEGMENTS, COUNTER_RING_PEAK, EVENTS, PID_FILTER, SCRATCH, STREAM_OFFSETS,
        UID_FILTER,
    },
};

/// Where the accepted bytes are. `kind` is a `SEG_*` kind: for one buffer (`SEG_UBUF` in user
/// memory: `write`, `sendto`, `ITER_UBUF`; `SEG_KBUF` in kernel memory: a page for
/// `sendpage`) `ptr` and `len` are the buffer; for a segment array `ptr` is the array, `len`
/// its number of entries and `skip` the bytes consumed before this message; `SEG_NONE`: not in
/// memory the programs can read, or nowhere they can tell.
///
/// A struct whose every field is always set, not an enum: LLVM copies an enum's fields on
/// paths whose variant leaves them undefined, and the verifier refuses a program that reads an
/// unset register (`R3 !read_ok`).
#[derive(Clone, Copy)]
pub struct Payload {
    pub kind: u32,
    pub ptr: u64,
    pub len: u64,
    pub skip: u64,
}

impl Payload {
    pub const MISSING: Self = Self {
        kind: SEG_NONE,
        ptr: 0,
        len: 0,
        skip: 0,
    };

    /// One buffer, in user or kernel memory.
    #[inline(always)]
    pub fn buf(ptr: u64, len: u64, kernel: bool) -> Self {
        Self {
            kind: if kernel { SEG_KBUF } else { SEG_UBUF },
            ptr,
            len,
            skip: 0,
        }
    }

    /// An array of `count` segments of kind `kind`, the first `skip` bytes of which were
    /// consumed before this message.
    #[inline(always)]
    pub fn segments(array: u64, count: u64, skip: u64, kind: u32) -> Self {
        Self {
            kind,
            ptr: array,
            len: count,
            skip,
        }
    }
}

/// Kinds of segment arrays: a user `struct iovec` array in user memory (system call
/// arguments); a `struct iovec` array the kernel copied (`ITER_IOVEC`: user buffers); a
/// `struct kvec` array (`ITER_KVEC`: kernel buffers); a `struct bio_vec` array (`ITER_BVEC`:
/// pages, from `sendfile`/`splice`).
pub const SEG_USER_IOVEC: u32 = 0;
pub const SEG_IOVEC: u32 = 1;
pub const SEG_KVEC: u32 = 2;
pub const SEG_BVEC: u32 = 3;
/// For `SendEntry::kind`: one user buffer, one kernel buffer, or nothing readable.
pub const SEG_UBUF: u32 = 4;
pub const SEG_KBUF: u32 = 5;
pub const SEG_NONE: u32 = 6;

/// `bpf_ringbuf_query` and `bpf_ringbuf_output` flags (include/uapi/linux/bpf.h).
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Upper bound of the copy loop: one step copies from one iovec into one segment (reading the
/// iovec entry first when the previous one is used up), so a message is captured whole when
/// `iovecs + segments` stays below this (1,024 iovecs, the kernel's UIO_MAXIOV, and 64 MiB).
const MAX_STEPS: u32 = 4_096;
/// Steps per program on kernels without `bpf_loop`, where the verifier walks every step;
/// tail calls chain up to 33 programs.
const FALLBACK_STEPS: u32 = 256;

/// Set in the `STREAM_OFFSETS` key of a socket's received-bytes counter (inode numbers are
/// 32-bit in practice).
const RECV_OFFSETS: u64 = 1 << 63;

/// `cont` for a program type without a continuation program.
pub const NO_CONTINUATION: u32 = u32::MAX;

/// Masks that let the verifier see every copy stays inside `Scratch::data` (see there).
const OFFSET_MASK: u64 = 0xFFFF;
const LEN_MASK: u64 = 0xFFFF;
const RECORD_MASK: u64 = 0x1_FFFF;

/// True when the current process is one to capture.
#[inline(always)]
pub fn wanted(tgid: u32) -> bool {
    if tgid == config::self_tgid() {
        return false;
    }
    let filters = config::filters();
    if filters == 0 {
        return true;
    }
    // SAFETY (map lookups): the values are not kept past the checks.
    if filters & filter::PIDS != 0 && unsafe { PID_FILTER.get(tgid) }.is_none() {
        return false;
    }
    if filters & filter::UIDS != 0 {
        let uid = bpf_get_current_uid_gid() as u32;
        if unsafe { UID_FILTER.get(uid) }.is_none() {
            return false;
        }
    }
    if filters & filter::COMMS != 0 {
        let comm = bpf_get_current_comm().unwrap_or([0; 16]);
        if unsafe { COMM_FILTER.get(&comm) }.is_none() {
            return false;
        }
    }
    true
}

/// The type of Unix socket `sk`, if it is one the capture wants (`--type`).
#[inline(always)]
pub fn unix_type(sk: u64, layout: &KernelLayout) -> Option<u16> {
    let sock_type = kernel::unix_sock_type(sk, layout)?;
    let types = config::type_mask();
    if types != 0 && types & (1 << (sock_type & 31)) == 0 {
        return None;
    }
    Some(sock_type)
}

/// Records a message of `accepted` bytes sent on socket `sk` (a Unix socket of type
/// `sock_type` the capture wants: the caller checked with [`unix_type`] before looking for the
/// payload, so that other sockets cost as little as possible) from syscall `syscall`, to
/// `dest` (the `struct sockaddr_un` an unconnected datagram was addressed to) when the socket
/// has no peer, with control data `control` (or `Mem::NONE` when its entry sent it already).
/// `ctx` and `cont` (a `COPY_CONTINUE` index, or [`NO_CONTINUATION`]) let the copy go on in a
/// tail call on kernels without `bpf_loop`.
///
/// `LOOP`: copy under `bpf_loop` (5.17+). Programs for older kernels are built with `false`:
/// there a program may not even mention `bpf_loop`, as its callback reference
/// (`BPF_PSEUDO_FUNC`) is an instruction the 5.10 verifier rejects wherever it stands.
#[inline(always)]
pub fn capture_send<const LOOP: bool, C: EbpfContext>(
    ctx: &C,
    cont: u32,
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
    let msg_len = accepted as u64;
    if control.ptr != 0 {
        ancillary::emit(sk, control);
    }

    let cpu = unsafe { generated::bpf_get_smp_processor_id() };
    let scratch: *mut Scratch = SCRATCH.get_ptr_mut(cpu).ok_or(-1i64)?;
    // The slot belongs to this CPU while the program runs: tracepoint and kprobe programs
    // run with preemption disabled; trampoline programs only with migration disabled, so on
    // a fully preemptible kernel another task on this CPU could come in while a copy is
    // under way. That message is counted as lost rather than mixed into the slot.
    // SAFETY: this CPU's slot.
    if unsafe { (*scratch).copy.busy } != 0 {
        count(
            COUNTER_LOST_SEGMENTS,
            msg_len.div_ceil(u64::from(SEGMENT_MAX)).max(1),
        );
        count(COUNTER_LOST_BYTES, msg_len);
        return Ok(());
    }
    // SAFETY: as above.
    let header = unsafe { &mut (*scratch).header };

    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    header.kind = KIND_SEND;
    header.header_len = SEND_RECORD_LEN as u16;
    header.ts_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    header.pid = (pid_tgid >> 32) as u32;
    header.tid = pid_tgid as u32;
    header.uid = uid_gid as u32;
    header.gid = (uid_gid >> 32) as u32;
    header.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    header.sock_type = sock_type;
    header.syscall = syscall;
    header.msg_len = msg_len;
    header.reserved = 0;

    let ino = kernel::sock_ino(sk, layout);
    header.sock_ino = ino;
    header.path_len = kernel::unix_path(sk, layout, &mut header.path);
    header.sock_id = sk;
    let peer = kernel::unix_peer(sk, layout);
    header.peer_id = peer;
    if peer == 0 {
        header.peer_ino = 0;
        header.peer_path_len = dest_path(dest, &mut header.peer_path);
    } else {
        header.peer_ino = kernel::sock_ino(peer, layout);
        header.peer_path_len = kernel::unix_path(peer, layout, &mut header.peer_path);
    }

    // The socket's byte offset: where this message starts in its stream (of bytes sent, or
    // for a receive of bytes received).
    let key = if recv { ino | RECV_OFFSETS } else { ino };
    let base_offset = match STREAM_OFFSETS.get_ptr_mut(key) {
        Some(next) => {
            // SAFETY: a map value. Not an atomic fetch-add: that needs BPF_FETCH (5.12+); two
            // threads sending on the same socket at the same instant on two CPUs can race
            // here, as their bytes interleave unpredictably in the kernel's queue anyway.
            let start = unsafe { *next };
            unsafe { *next = start + msg_len };
            start
        }
        None => {
            let _ = STREAM_OFFSETS.insert(key, msg_len, 0);
            0
        }
    };

    let base_flags = if recv { flags::RECV } else { 0 };
    copy_segments::<LOOP, C>(ctx, cont, cpu, msg_len, base_offset, base_flags, payload);
    Ok(())
}

/// Copies the name in the destination address `dest` (a `struct sockaddr_un`) into `dst`;
/// returns how many bytes it holds, 0 when there is no Unix address.
#[inline(always)]
fn dest_path(dest: Mem, dst: &mut [u8; PATH_MAX]) -> u16 {
    // sun_family (u16) and at least one byte of name.
    if dest.ptr == 0 || dest.len <= 2 || dest.read::<u16>(dest.ptr) != Ok(kernel::AF_UNIX) {
        return 0;
    }
    let mut n = dest.len - 2;
    if n > PATH_MAX as u64 {
        n = PATH_MAX as u64;
    }
    // SAFETY: dst is PATH_MAX bytes and n <= PATH_MAX.
    let rc = unsafe { dest.copy(dest.ptr + 2, dst.as_mut_ptr().cast::<c_void>(), n as u32) };
    if rc == 0 {
        n as u16
    } else {
        0
    }
}

/// Copies the message's payload into records, one per segment, and sends them.
#[inline(always)]
fn copy_segments<const LOOP: bool, C: EbpfContext>(
    ctx: &C,
    cont: u32,
    cpu: u32,
    msg_len: u64,
    base_offset: u64,
    base_flags: u32,
    payload: Payload,
) {
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: this CPU's slot (see SCRATCH).
    let st = unsafe { &mut (*scratch).copy };
    let snaplen = u64::from(config::snaplen());
    *st = CopyState {
        remaining: msg_len,
        cur_ptr: 0,
        cur_left: 0,
        iov_base: 0,
        iov_count: 0,
        iov_index: 0,
        skip: 0,
        seg_offset: 0,
        fill: 0,
        base_offset,
        msg_len,
        flags: base_flags,
        seg_kind: 0,
        cur_kernel: 0,
        busy: 1,
    };
    if st.remaining > snaplen {
        st.remaining = snaplen;
        st.flags |= flags::SNAPLEN;
    }
    match payload.kind {
        SEG_UBUF | SEG_KBUF => {
            st.cur_ptr = payload.ptr;
            st.cur_left = payload.len;
            st.cur_kernel = u32::from(payload.kind == SEG_KBUF);
        }
        SEG_USER_IOVEC | SEG_IOVEC | SEG_KVEC | SEG_BVEC => {
            st.iov_base = payload.ptr;
            st.iov_count = payload.len;
            st.skip = payload.skip;
            st.seg_kind = payload.kind;
        }
        _ => {
            st.flags |= flags::PAYLOAD_MISSING;
            st.remaining = 0;
        }
    }
    if st.remaining != 0 {
        if LOOP {
            let mut cpu_arg = cpu;
            // SAFETY: bpf_loop calls copy_step_callback with a pointer to `cpu_arg`, which
            // outlives the call.
            unsafe {
                generated::bpf_loop(
                    MAX_STEPS,
                    copy_step_callback as *mut c_void,
                    (&raw mut cpu_arg).cast::<c_void>(),
                    0,
                );
            }
        } else if !fallback_steps(cpu) && cont != NO_CONTINUATION {
            // Kernels without bpf_loop (before 5.17): what one program may copy is bounded by
            // what the verifier can walk; the rest is copied by a chain of tail calls.
            // SAFETY: a tail call; it returns only when it could not be made.
            unsafe { COPY_CONTINUE.tail_call(ctx, cont) };
        }
    }
    finish(cpu);
}

/// Runs up to `FALLBACK_STEPS` copy steps; true when the copy is over.
#[inline(always)]
fn fallback_steps(cpu: u32) -> bool {
    for _ in 0..FALLBACK_STEPS {
        if copy_step(cpu) {
            return true;
        }
    }
    false
}

/// The body of the tail-called continuation programs: more steps, then another tail call or
/// the end of the message. A chain stops at the kernel's tail call limit (33); a message
/// still unfinished then is cut and flagged `iov-limit`.
#[inline(always)]
pub fn continue_copy<C: EbpfContext>(ctx: &C, cont: u32) {
    let cpu = unsafe { generated::bpf_get_smp_processor_id() };
    if !fallback_steps(cpu) {
        // SAFETY: as in copy_segments.
        unsafe { COPY_CONTINUE.tail_call(ctx, cont) };
    }
    finish(cpu);
}

/// Sends the message's last record and frees the slot.
#[inline(always)]
fn finish(cpu: u32) {
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: this CPU's slot; the steps changed it through their own pointer.
    let st = unsafe { &mut (*scratch).copy };
    if st.busy == 0 {
        return;
    }
    let mut record_flags = st.flags | flags::LAST;
    if st.remaining != 0 && record_flags & flags::READ_FAULT == 0 {
        record_flags |= flags::IOV_LIMIT;
    }
    emit(
        scratch,
        st.fill,
        st.seg_offset,
        st.base_offset,
        st.msg_len,
        record_flags,
    );
    st.busy = 0;
}

#[inline(never)]
extern "C" fn copy_step_callback(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx points at the CPU number copy_segments passed to bpf_loop.
    let cpu = unsafe { *ctx.cast::<u32>() };
    i64::from(copy_step(cpu))
}

/// Copies from one iovec into the current segment, sending the segment when it is full.
/// Returns true when the loop is over.
///
/// The loop's state lives in the map value, not on the stack: the verifier does not track
/// map contents, so every step looks the same to it and the loop is verified once instead of
/// once per iteration.
#[inline(always)]
fn copy_step(cpu: u32) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(cpu) else {
        return true;
    };
    // SAFETY: this CPU's slot.
    let st = unsafe { &mut (*scratch).copy };
    if st.remaining == 0 {
        return true;
    }
    if st.cur_left == 0 {
        if st.iov_index >= st.iov_count {
            // Fewer bytes in the buffers than the kernel said it took: only possible if the
            // sender rewrote its iovec array during the call.
            st.flags |= flags::READ_FAULT;
            return true;
        }
        if next_segment(st).is_err() {
            st.flags |= flags::READ_FAULT;
            return true;
        }
        if st.cur_left == 0 {
            // An empty segment.
            return false;
        }
    }
    let mut n = st.cur_left;
    if n > st.remaining {
        n = st.remaining;
    }
    let room = u64::from(SEGMENT_MAX) - st.fill;
    if n > room {
        n = room;
    }
    // SAFETY: the offset and the length are each below 64 KiB, and Scratch::data is 128 KiB;
    // the helpers validate the source address.
    let rc = unsafe {
        let dst = (*scratch)
            .data
            .as_mut_ptr()
            .add((st.fill & OFFSET_MASK) as usize)
            .cast::<c_void>();
        let from = Mem {
            ptr: st.cur_ptr,
            len: n,
            kernel: st.cur_kernel != 0,
        };
        from.copy(st.cur_ptr, dst, (n & LEN_MASK) as u32)
    };
    if rc != 0 {
        st.flags |= flags::READ_FAULT;
        return true;
    }
    st.fill += n;
    st.cur_ptr += n;
    st.cur_left -= n;
    st.remaining -= n;
    if st.remaining == 0 {
        return true;
    }
    if st.fill >= u64::from(SEGMENT_MAX) {
        emit(
            scratch,
            st.fill,
            st.seg_offset,
            st.base_offset,
            st.msg_len,
            st.flags,
        );
        st.seg_offset += u64::from(SEGMENT_MAX);
        st.fill = 0;
    }
    false
}

/// Reads the next entry of the segment array into the current buffer, skipping what was
/// consumed before the message.
#[inline(always)]
fn next_segment(st: &mut CopyState) -> Result<(), i64> {
    let layout = config::layout();
    let stride = if st.seg_kind == SEG_BVEC {
        u64::from(layout.bvec_size)
    } else {
        16
    };
    let at = st.iov_base + st.iov_index * stride;
    st.iov_index += 1;
    if st.seg_kind == SEG_BVEC {
        let page: u64 = kernel::read(at, layout.bvec_page)?;
        let len: u32 = kernel::read(at, layout.bvec_len)?;
        let offset: u32 = kernel::read(at, layout.bvec_offset)?;
        st.cur_ptr = kernel::page_address(page)? + u64::from(offset);
        st.cur_left = u64::from(len);
        st.cur_kernel = 1;
    } else {
        // struct iovec and struct kvec: { void *base; size_t len; } (ABI).
        let entry: [u64; 2] = if st.seg_kind == SEG_USER_IOVEC {
            kernel::read_user(at)?
        } else {
            kernel::read(at, 0)?
        };
        st.cur_ptr = entry[0];
        st.cur_left = entry[1];
        st.cur_kernel = u32::from(st.seg_kind == SEG_KVEC);
    }
    if st.skip != 0 {
        let mut skip = st.skip;
        if skip > st.cur_left {
            skip = st.cur_left;
        }
        st.cur_ptr += skip;
        st.cur_left -= skip;
        st.skip -= skip;
    }
    Ok(())
}

/// Sends one record; counts it (and for the last record the segments after it) as lost when
/// the ring buffer is full.
#[inline(always)]
fn emit(
    scratch: *mut Scratch,
    fill: u64,
    seg_offset: u64,
    base_offset: u64,
    msg_len: u64,
    record_flags: u32,
) {
    let header = unsafe { &mut (*scratch).header };
    header.flags = record_flags;
    header.cap_len = fill as u32;
    header.seg_offset = seg_offset;
    header.stream_offset = base_offset + seg_offset;
    header.lost_segments = COUNTERS
        .get_ptr(COUNTER_LOST_SEGMENTS)
        .map_or(0, |p| unsafe { *p });
    let size = SEND_RECORD_LEN as u64 + (fill & RECORD_MASK);
    // SAFETY: header and data are contiguous (repr(C), data has alignment 1) and size is at
    // most the header plus RECORD_MASK < SCRATCH_DATA payload bytes.
    let record = unsafe {
        core::slice::from_raw_parts((&raw const (*scratch).header).cast::<u8>(), size as usize)
    };
    // Wake userspace only when the buffer is filling up; it drains on a short timer anyway.
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    let wakeup = if waiting >= config::wakeup_bytes() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    let sent = EVENTS.output::<[u8]>(record, wakeup);
    if let Some(peak) = COUNTERS.get_ptr_mut(COUNTER_RING_PEAK) {
        // SAFETY: a map value; a lost race only understates the peak for one interval.
        unsafe {
            if waiting > *peak {
                *peak = waiting;
            }
        }
    }
    if sent.is_err() {
        let (segments, bytes) = if record_flags & flags::LAST != 0 {
            // This segment and the ones after it that had no record.
            let rest = msg_len - seg_offset;
            (rest.div_ceil(u64::from(SEGMENT_MAX)).max(1), rest)
        } else {
            (1, u64::from(SEGMENT_MAX))
        };
        count(COUNTER_LOST_SEGMENTS, segments);
        count(COUNTER_LOST_BYTES, bytes);
    }
}

#[inline(always)]
pub fn count(index: u32, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a map value, shared between CPUs: updated atomically.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
    }
}
