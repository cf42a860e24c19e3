//! udstrace's kernel programs.
//!
//! One file per hook; the capture logic they share lives in `capture`, the maps in `maps`, the
//! run-time configuration (kernel field offsets, filters) in `config`, the system call ABI the
//! tracepoint hooks read in `syscall`.
#![no_std]
#![no_main]
// Atomic adds on map values: the BPF target has no `core::sync::atomic` read-modify-write.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod ancillary;
mod capture;
mod config;
mod kernel;
mod maps;
mod sched_process_fork;
mod sendmsg;
mod sock_recv_length;
mod sock_send_length;
mod syscall;
mod unix_sendmsg_fentry;
mod unix_sendmsg_kprobe;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path: this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
