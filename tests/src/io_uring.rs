//! Just enough io_uring to send a buffer on a socket the way io_uring clients do
//! (`IORING_OP_SEND`, 5.6+): set up a ring, queue one send, submit it, wait for its completion.
//! Written against include/uapi/linux/io_uring.h; no library is needed.

use std::{io, os::fd::RawFd, ptr};

/// x86_64 system call numbers.
const SYS_IO_URING_SETUP: libc::c_long = 425;
const SYS_IO_URING_ENTER: libc::c_long = 426;

const IORING_OP_SEND: u8 = 26;
const IORING_ENTER_GETEVENTS: u32 = 1;
/// mmap offsets of the rings and of the submission queue entries.
const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;

/// `struct io_sqring_offsets` / `struct io_cqring_offsets` (40 bytes each).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags_or_overflow: u32,
    /// `array` for the submission ring, `cqes` for the completion ring.
    dropped_or_cqes: u32,
    array_or_flags: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_uring_params` (120 bytes).
#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: RingOffsets,
    cq_off: RingOffsets,
}

const _: () = assert!(std::mem::size_of::<Params>() == 120);

/// Sends `data` on socket `fd` with one `IORING_OP_SEND` and returns the completion's result
/// (bytes sent, or -errno).
pub fn send(fd: RawFd, data: &[u8]) -> io::Result<i32> {
    let mut p = Params::default();
    // SAFETY: io_uring_setup reads and fills the `io_uring_params` behind the pointer: `p`,
    // a `#[repr(C)]` copy of that 120-byte struct (size checked above), borrowed mutably for
    // the call.
    let ring = unsafe { libc::syscall(SYS_IO_URING_SETUP, 4u32, &raw mut p) };
    if ring < 0 {
        return Err(io::Error::last_os_error());
    }
    let ring = ring as RawFd;
    let result = submit_send(ring, &p, fd, data);
    // SAFETY: `ring` is the descriptor io_uring_setup returned above, used by nothing else
    // once submit_send has returned (its mappings are unmapped), closed only here.
    unsafe { libc::close(ring) };
    result
}

/// One of the ring's mappings, unmapped on drop.
struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    /// `len` bytes of the ring's descriptor at `offset`, one of the offsets the kernel
    /// defines for its rings.
    fn new(ring: RawFd, len: usize, offset: i64) -> io::Result<Self> {
        // SAFETY: with a null address mmap makes a new mapping and changes no memory of ours;
        // the result is checked before use.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                ring,
                offset,
            )
        };
        if base == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(Self {
                base: base.cast(),
                len,
            })
        }
    }

    /// The `u32` ring field at byte offset `off` (one the kernel gave in `Params`). Computing
    /// the pointer is safe; using it is up to the caller.
    // The kernel places every ring field at its natural alignment in page-aligned mappings.
    #[allow(clippy::cast_ptr_alignment)]
    fn field(&self, off: u32) -> *mut u32 {
        self.base.wrapping_add(off as usize).cast()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` are a mapping mmap made in `new`, unmapped only here, and
        // no pointer into it outlives the `Mapping` (submit_send's pointers are locals).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn enter(ring: RawFd, to_submit: u32) -> libc::c_long {
    // SAFETY: io_uring_enter with a null signal mask (size 0) reads no memory of ours; what it
    // reads of the rings is what the caller made valid, and it waits for a completion
    // (`IORING_ENTER_GETEVENTS`, `min_complete` 1).
    unsafe {
        libc::syscall(
            SYS_IO_URING_ENTER,
            ring,
            to_submit,
            1u32,
            IORING_ENTER_GETEVENTS,
            ptr::null::<u8>(),
            0usize,
        )
    }
}

fn submit_send(ring: RawFd, p: &Params, fd: RawFd, data: &[u8]) -> io::Result<i32> {
    let len = u32::try_from(data.len()).expect("small send");
    let sq = Mapping::new(
        ring,
        p.sq_off.array_or_flags as usize + p.sq_entries as usize * 4,
        IORING_OFF_SQ_RING,
    )?;
    let cq = Mapping::new(
        ring,
        p.cq_off.dropped_or_cqes as usize + p.cq_entries as usize * 16,
        IORING_OFF_CQ_RING,
    )?;
    let sqes = Mapping::new(ring, p.sq_entries as usize * 64, IORING_OFF_SQES)?;
    // SAFETY: the mappings have the sizes the kernel's `p` gives for them, and the tail, mask
    // and array offsets are those it put in `p`: inside the submission ring's mapping,
    // 4-byte aligned. `index` is masked by the ring's mask (entries - 1), so the entry
    // (`sqes + index * 64`, 64 bytes, its fields written unaligned) and its array slot
    // (`array + index * 4`) lie inside their mappings. The fields the kernel shares are read
    // and written volatile, the tail last, after a release fence.
    unsafe {
        let tail = sq.field(p.sq_off.tail).read_volatile();
        let index = tail & sq.field(p.sq_off.ring_mask).read_volatile();
        // The submission queue entry (64 bytes): opcode, flags, ioprio, fd, off, addr, len,
        // msg_flags, user_data.
        let sqe = sqes.base.add(index as usize * 64);
        ptr::write_bytes(sqe, 0, 64);
        *sqe = IORING_OP_SEND;
        sqe.add(4).cast::<i32>().write_unaligned(fd);
        sqe.add(16)
            .cast::<u64>()
            .write_unaligned(data.as_ptr() as u64);
        sqe.add(24).cast::<u32>().write_unaligned(len);
        sqe.add(32).cast::<u64>().write_unaligned(7);
        sq.field(p.sq_off.array_or_flags)
            .add(index as usize)
            .write_volatile(index);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        sq.field(p.sq_off.tail).write_volatile(tail.wrapping_add(1));
    }
    // io_uring_enter returns how many entries it submitted, even when its wait is cut short:
    // below 0, nothing was submitted.
    if enter(ring, 1) < 0 {
        return Err(io::Error::last_os_error());
    }
    // The entry points at `data`: wait until its completion is posted, when the kernel is done
    // with `data`, before the mappings go and `data`'s borrow ends.
    // SAFETY: the head, tail and mask offsets are those the kernel put in `p` for the
    // completion ring: inside its mapping, 4-byte aligned, read volatile.
    let (head, tail) = unsafe {
        (
            cq.field(p.cq_off.head).read_volatile(),
            cq.field(p.cq_off.tail).read_volatile(),
        )
    };
    let mut posted = head != tail;
    while !posted {
        if enter(ring, 0) < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // Unwinding could free `data` while the kernel may still read it.
            eprintln!("io_uring_enter: {}", io::Error::last_os_error());
            std::process::abort();
        }
        // SAFETY: the completion ring's tail, at the offset the kernel gave in `p`: inside
        // the mapping, 4-byte aligned, read volatile.
        posted = unsafe { cq.field(p.cq_off.tail).read_volatile() } != head;
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    // SAFETY: the mask and cqes offsets are those the kernel put in `p`; `cq_index` is masked
    // by the completion ring's mask (entries - 1), so the completion (`cqes + cq_index * 16`,
    // 16 bytes, its result an aligned i32 at 8) lies inside the mapping; the kernel posted it
    // before moving the tail, read after the acquire fence.
    let res = unsafe {
        let cq_index = head & cq.field(p.cq_off.ring_mask).read_volatile();
        cq.field(p.cq_off.dropped_or_cqes + cq_index * 16 + 8)
            .cast::<i32>()
            .read_volatile()
    };
    Ok(res)
}
