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
    // SAFETY: io_uring_setup with a valid params struct.
    let ring = unsafe { libc::syscall(SYS_IO_URING_SETUP, 4u32, &raw mut p) };
    if ring < 0 {
        return Err(io::Error::last_os_error());
    }
    let ring = ring as RawFd;
    let result = submit_send(ring, &p, fd, data);
    // SAFETY: closing the ring's fd.
    unsafe { libc::close(ring) };
    result
}

// The kernel places every ring field and entry at its natural alignment in page-aligned
// mappings.
#[allow(clippy::cast_ptr_alignment)]
fn submit_send(ring: RawFd, p: &Params, fd: RawFd, data: &[u8]) -> io::Result<i32> {
    let sq_len = p.sq_off.array_or_flags as usize + p.sq_entries as usize * 4;
    let cq_len = p.cq_off.dropped_or_cqes as usize + p.cq_entries as usize * 16;
    let sq = map(ring, sq_len, IORING_OFF_SQ_RING)?;
    let cq = map(ring, cq_len, IORING_OFF_CQ_RING)?;
    let sqes = map(ring, p.sq_entries as usize * 64, IORING_OFF_SQES)?;
    // SAFETY: every pointer below is inside the rings the kernel sized in `p`.
    let res = unsafe {
        let at = |base: *mut u8, off: u32| base.add(off as usize).cast::<u32>();
        let tail = ptr::read_volatile(at(sq, p.sq_off.tail));
        let index = tail & ptr::read_volatile(at(sq, p.sq_off.ring_mask));
        // The submission queue entry (64 bytes): opcode, flags, ioprio, fd, off, addr, len,
        // msg_flags, user_data.
        let sqe = sqes.add(index as usize * 64);
        ptr::write_bytes(sqe, 0, 64);
        *sqe = IORING_OP_SEND;
        sqe.add(4).cast::<i32>().write_unaligned(fd);
        sqe.add(16)
            .cast::<u64>()
            .write_unaligned(data.as_ptr() as u64);
        sqe.add(24)
            .cast::<u32>()
            .write_unaligned(u32::try_from(data.len()).expect("small send"));
        sqe.add(32).cast::<u64>().write_unaligned(7);
        at(sq, p.sq_off.array_or_flags)
            .add(index as usize)
            .write_volatile(index);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        ptr::write_volatile(at(sq, p.sq_off.tail), tail.wrapping_add(1));
        let n = libc::syscall(
            SYS_IO_URING_ENTER,
            ring,
            1u32,
            1u32,
            IORING_ENTER_GETEVENTS,
            ptr::null::<u8>(),
            0usize,
        );
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let head = ptr::read_volatile(at(cq, p.cq_off.head));
        let cq_index = head & ptr::read_volatile(at(cq, p.cq_off.ring_mask));
        let cqe = cq.add(p.cq_off.dropped_or_cqes as usize + cq_index as usize * 16);
        cqe.add(8).cast::<i32>().read_volatile()
    };
    for (base, len) in [
        (sq, sq_len),
        (cq, cq_len),
        (sqes, p.sq_entries as usize * 64),
    ] {
        // SAFETY: unmapping what map() mapped.
        unsafe { libc::munmap(base.cast(), len) };
    }
    Ok(res)
}

fn map(ring: RawFd, len: usize, offset: i64) -> io::Result<*mut u8> {
    // SAFETY: a shared mapping of the ring's fd at an offset the kernel defines.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            ring,
            offset,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}
