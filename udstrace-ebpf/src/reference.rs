//! Reference programs for `cargo xtask bench`, never loaded by a capture (`udstrace
//! reference`): what any program on `sock:sock_send_length` costs a sender on this kernel, so
//! that the benchmark measures how far the capture is from the floor in the same run.
//!
//! - `reference_empty` returns at once: the tracepoint's own cost once a program is attached.
//! - `reference_floor` does only what any capture of a message's bytes must: it checks that
//!   the socket is a Unix one, reads the system call's buffer argument, takes the time, and
//!   reads the payload (`write` and `sendto` of up to 4 KiB) into a ring-buffer record of 8
//!   bytes of time and the bytes. No sender, socket, receiver or offset: every field the
//!   capture records costs on top of this.
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros call each program with its context by value"
)]

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, generated},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    config, filter,
    kernel::Btf,
    maps::{wakeup_flag, BPF_RB_AVAIL_DATA, EVENTS},
    syscall::Regs,
};

#[btf_tracepoint(function = "sock_send_length")]
fn reference_empty(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sock_send_length")]
fn reference_floor(ctx: BtfTracePointContext) -> i32 {
    let _ = try_reference_floor(&ctx);
    0
}

fn try_reference_floor(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let sk: u64 = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let layout = config::layout();
    if ret <= 0 || filter::unix_type::<Btf>(sk, layout).is_none() {
        return Ok(());
    }
    let regs = Regs::current();
    let nr = regs.number()?;
    let abi = config::syscall_abi();
    if nr != abi.write && nr != abi.sendto {
        return Ok(());
    }
    let buf = regs.arg(1)?;
    let n = u64::from(ret.cast_unsigned());
    if n <= 64 {
        floor_record::<64>(buf, n);
    } else if n <= 4096 {
        floor_record::<4096>(buf, n);
    }
    Ok(())
}

/// A record of the time and the `n` (1 to `ROOM`, a power of two) bytes at `buf`.
#[inline(always)]
fn floor_record<const ROOM: usize>(buf: u64, n: u64) {
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA);
    let Some(mut entry) = EVENTS.reserve_bytes(8 + ROOM, 0) else {
        return;
    };
    let record = entry.as_mut_ptr();
    // 1..=ROOM as a mask the verifier sees: read back opaquely, or the compiler drops the mask
    // its own bounds make redundant.
    // SAFETY: a read of a local.
    let n = unsafe { core::ptr::read_volatile(&raw const n) };
    let len = ((n - 1) & (ROOM as u64 - 1)) + 1;
    // SAFETY: the entry has 8 + ROOM bytes, 8-byte aligned (ring-buffer records are), and
    // len <= ROOM; the helper checks the source.
    unsafe {
        record
            .cast::<[u8; 8]>()
            .write(bpf_ktime_get_boot_ns().to_ne_bytes());
        generated::bpf_probe_read_user(
            record.add(8).cast::<c_void>(),
            len as u32,
            buf as *const c_void,
        );
    }
    entry.submit(wakeup_flag(waiting));
}
