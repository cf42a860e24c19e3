//! The copy loop: a message's payload, segment by segment, into records for the ring buffer.

use core::ffi::c_void;

use aya_ebpf::{helpers::generated, EbpfContext};
use udstrace_common::{
    counter,
    record::{flags, SEGMENT_MAX, SEND_RECORD_LEN},
};

use crate::{
    config,
    counters::count,
    kernel::{self, Mem},
    maps::{
        wakeup_flag, CopyState, Scratch, BPF_RB_AVAIL_DATA, COPY_CONTINUE, COUNTERS, EVENTS,
        SCRATCH,
    },
    payload::{Payload, SEG_BVEC, SEG_IOVEC, SEG_KBUF, SEG_KVEC, SEG_UBUF, SEG_USER_IOVEC},
};

/// Upper bound of the copy loop: one step copies from one iovec into one segment (reading the
/// iovec entry first when the previous one is used up), so a message is captured whole when
/// `iovecs + segments` stays below this (1,024 iovecs, the kernel's UIO_MAXIOV, and 64 MiB).
const MAX_STEPS: u32 = 4_096;
/// Steps per program on kernels without `bpf_loop`, where the verifier walks every step;
/// tail calls chain up to 33 programs.
const FALLBACK_STEPS: u32 = 256;

/// Segments of more bytes than this, copied from one buffer, go straight into a record reserved
/// in the ring buffer ([`direct`]): one copy of their bytes instead of two (into the slot,
/// then into the ring buffer). One-thread 64 KiB write+read loop, 10 alternating rounds:
/// median 4,920 -> 5,184 per 50 ms (`perf` of the sender: the kernel's copies 15.3% -> 10.1%).
const DIRECT_MIN: u64 = 32_768;

/// The payload room of a record filled in place: a power of two (see [`direct`]).
const DIRECT_ROOM: usize = 65_536;
const _: () =
    assert!(SEGMENT_MAX as usize <= DIRECT_ROOM && DIRECT_MIN as usize >= DIRECT_ROOM / 2);

/// `cont` for a program without a continuation: with `bpf_loop`, or one that may not tail-call.
pub(crate) const NO_CONTINUATION: u32 = u32::MAX;

/// Masks that let the verifier see every copy stays inside `Scratch::data` (see there).
const OFFSET_MASK: u64 = 0xFFFF;
const LEN_MASK: u64 = 0xFFFF;
const RECORD_MASK: u64 = 0x1_FFFF;

/// Copies the message's payload into records, one per segment, and sends them.
#[inline(always)]
pub(crate) fn copy_segments<const LOOP: bool, C: EbpfContext>(
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
    st.start(msg_len, base_offset, base_flags);
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
            // The first step in place: most messages are one buffer within one segment, done
            // in one step, without the loop's indirect call per step.
            if copy_step::<FIRST>(cpu) {
                finish(cpu);
                return;
            }
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
        } else if cont == NO_CONTINUATION {
            // No continuation (a constant the compiler folds: the program has no tail call,
            // see `unix_sendmsg_kprobe`): the steps in place, what they cannot copy is cut.
            let _ = fallback_steps(cpu);
        } else {
            // Kernels without bpf_loop (before 5.17): what one program may copy is bounded by
            // what the verifier can walk, so the copy is a chain of tail calls to the
            // continuation, from its first step: the steps are then verified once, in the
            // continuation, not again in every hook (under emulation each walk of the steps
            // took seconds, for each of up to 7 hooks, at every start).
            // SAFETY: a tail call; it returns only when it could not be made (the message
            // is then flagged `iov-limit` by `finish`).
            unsafe { COPY_CONTINUE.tail_call(ctx, cont) };
        }
    }
    finish(cpu);
}

/// Runs up to `FALLBACK_STEPS` copy steps; true when the copy is over.
#[inline(always)]
fn fallback_steps(cpu: u32) -> bool {
    for _ in 0..FALLBACK_STEPS {
        if copy_step::<STEP>(cpu) {
            return true;
        }
    }
    false
}

/// The body of the tail-called continuation programs: more steps, then another tail call or
/// the end of the message. A chain stops at the kernel's tail call limit (33); a message
/// still unfinished then is cut and flagged `iov-limit`.
#[inline(always)]
pub(crate) fn continue_copy<C: EbpfContext>(ctx: &C, cont: u32) {
    // SAFETY: a helper with no arguments.
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
    i64::from(copy_step::<DIRECT>(cpu))
}

/// What a copy step does with a whole segment from one buffer of more than `DIRECT_MIN` bytes.
/// [`STEP`]: copies it through the slot, as any other (the steps of kernels without
/// `bpf_loop`, which the verifier walks one by one). [`DIRECT`]: sends it straight from the
/// buffer ([`direct`]; the steps under `bpf_loop`, whose callback is verified once). [`FIRST`]:
/// leaves it to the loop (the first step, made in place in every hook, where the direct path
/// doubled the verification: 30 -> 59-65 ms).
const STEP: u8 = 0;
const DIRECT: u8 = 1;
const FIRST: u8 = 2;

/// Copies from one iovec into the current segment, sending the segment when it is full.
/// Returns true when the loop is over. `MODE`: [`STEP`], [`DIRECT`] or [`FIRST`].
///
/// The loop's state lives in the map value, not on the stack: the verifier does not track
/// map contents, so every step looks the same to it and the loop is verified once instead of
/// once per iteration.
#[inline(always)]
fn copy_step<const MODE: u8>(cpu: u32) -> bool {
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
    // A whole segment from this buffer: the message's last bytes, or a full segment.
    if MODE != STEP
        && st.fill == 0
        && n > DIRECT_MIN
        && (n == st.remaining || n == u64::from(SEGMENT_MAX))
    {
        if MODE == FIRST {
            return false;
        }
        if let Some(over) = direct(scratch, n) {
            return over;
        }
        // No room in the ring buffer: through the slot, whose record is then counted lost.
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

/// Sends the whole segment of `n` bytes (`DIRECT_MIN < n <= SEGMENT_MAX`) that starts at the
/// current buffer: reserves a record in the ring buffer, copies the header and the bytes into
/// it, and submits it. `None` when the ring buffer has no room; else true when the loop is
/// over.
///
/// The ring buffer reserves only sizes the verifier sees as constants: every such record has
/// room for [`DIRECT_ROOM`] bytes, at most twice what it holds; userspace reads its `cap_len`.
/// (Smaller messages go through the slot: with size classes down to 4 KiB, a 4 KiB message
/// cost its sender no less, and the verification took 3 ms more.)
#[inline(always)]
fn direct(scratch: *mut Scratch, n: u64) -> Option<bool> {
    // SAFETY: this CPU's slot (see SCRATCH).
    let st = unsafe { &mut (*scratch).copy };
    let last = n == st.remaining;
    let record_flags = if last {
        st.flags | flags::LAST
    } else {
        st.flags
    };
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    let mut record = EVENTS.reserve_bytes(SEND_RECORD_LEN + DIRECT_ROOM, 0)?;
    fill_header(scratch, n, st.seg_offset, st.base_offset, record_flags);
    // In 1..=DIRECT_ROOM for the verifier, where n already is: a mask on the value itself,
    // which survives the compiler's spills (see `record::dest_path`).
    // SAFETY: a read of a local.
    let len =
        ((unsafe { core::ptr::read_volatile(&raw const n) } - 1) & (DIRECT_ROOM as u64 - 1)) + 1;
    let dst = record.as_mut_ptr();
    let from = Mem {
        ptr: st.cur_ptr,
        len,
        kernel: st.cur_kernel != 0,
    };
    // SAFETY: the record holds the header and DIRECT_ROOM bytes after it, and len <=
    // DIRECT_ROOM. The header is this CPU's slot's.
    let copied = unsafe {
        generated::bpf_probe_read_kernel(
            dst.cast::<c_void>(),
            SEND_RECORD_LEN as u32,
            (&raw const (*scratch).header).cast::<c_void>(),
        ) == 0
            && from.copy(
                st.cur_ptr,
                dst.add(SEND_RECORD_LEN).cast::<c_void>(),
                len as u32,
            ) == 0
    };
    if !copied {
        record.discard(0);
        // The record `finish` sends says so.
        st.flags |= flags::READ_FAULT;
        return Some(true);
    }
    record.submit(wakeup_flag(waiting));
    note_peak(waiting);
    st.cur_ptr += n;
    st.cur_left -= n;
    st.remaining -= n;
    if last {
        // Sent: nothing left for `finish`.
        st.busy = 0;
        return Some(true);
    }
    st.seg_offset += u64::from(SEGMENT_MAX);
    Some(false)
}

/// Fills the slot's record header for a segment of `fill` bytes at `seg_offset` of its message.
#[inline(always)]
fn fill_header(
    scratch: *mut Scratch,
    fill: u64,
    seg_offset: u64,
    base_offset: u64,
    record_flags: u32,
) {
    // SAFETY: this CPU's slot (see SCRATCH); the caller's reference is to its `copy` field.
    let header = unsafe { &mut (*scratch).header };
    header.flags = record_flags;
    header.cap_len = fill as u32;
    header.seg_offset = seg_offset;
    header.stream_offset = base_offset + seg_offset;
    header.lost_segments = COUNTERS
        .get_ptr(counter::LOST_SEGMENTS)
        // SAFETY: a map value, read once (other CPUs may be adding to it).
        .map_or(0, |p| unsafe { *p });
}

/// Keeps `waiting` (the bytes that waited in the ring buffer before a record) if it is the
/// most yet.
#[inline(always)]
fn note_peak(waiting: u64) {
    if let Some(peak) = COUNTERS.get_ptr_mut(counter::RING_PEAK) {
        // SAFETY: a map value; a lost race only understates the peak for one interval.
        unsafe {
            if waiting > *peak {
                *peak = waiting;
            }
        }
    }
}

/// Sends one record from the slot; counts it (and for the last record the segments after it)
/// as lost when the ring buffer is full.
#[inline(always)]
fn emit(
    scratch: *mut Scratch,
    fill: u64,
    seg_offset: u64,
    base_offset: u64,
    msg_len: u64,
    record_flags: u32,
) {
    fill_header(scratch, fill, seg_offset, base_offset, record_flags);
    let size = SEND_RECORD_LEN as u64 + (fill & RECORD_MASK);
    // SAFETY: header and data are contiguous (repr(C), data has alignment 1) and size is at
    // most the header plus RECORD_MASK < SCRATCH_DATA payload bytes.
    let record = unsafe {
        core::slice::from_raw_parts((&raw const (*scratch).header).cast::<u8>(), size as usize)
    };
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    let sent = EVENTS.output::<[u8]>(record, wakeup_flag(waiting));
    note_peak(waiting);
    if sent.is_err() {
        let (segments, bytes) = if record_flags & flags::LAST != 0 {
            // This segment and the ones after it that had no record.
            let rest = msg_len - seg_offset;
            (rest.div_ceil(u64::from(SEGMENT_MAX)).max(1), rest)
        } else {
            (1, u64::from(SEGMENT_MAX))
        };
        count(counter::LOST_SEGMENTS, segments);
        count(counter::LOST_BYTES, bytes);
    }
}
