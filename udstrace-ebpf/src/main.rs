//! udstrace's kernel programs: one file per hook, and the capture logic they share.
//!
//! The hooks (`sock_send_length`, `sock_recv_length`, `unix_sendmsg_fentry`,
//! `unix_sendmsg_kprobe`, `sched_process_fork`, `cgroup_mkdir`) find a message (or, the last
//! two, keep the filters and the container names up to date); `filter` says whether the
//! capture wants it, `record` fills its record header and `copy` copies its payload into the
//! ring buffer. The maps are in `maps`, the run-time configuration (kernel field offsets,
//! filters) in `config`, the system call ABI the tracepoint hooks read in `syscall`.
//!
//! Module dependencies: each module uses only modules on the lines above its own (no cycles).
//! - `config` (globals), `payload` (segment kinds)
//! - `kernel` (config)
//! - `maps` (kernel, payload)
//! - `counters`, `sockets` (maps), `receiver` (kernel, maps), `syscall` (config, kernel,
//!   payload)
//! - `filter` (config, kernel, maps, receiver)
//! - `ancillary`, `copy` (config, counters, kernel, maps; copy also payload)
//! - `record` (ancillary, copy, counters, kernel, maps, payload, receiver, sockets)
//! - `sendmsg` (ancillary, config, counters, filter, kernel, maps, payload, record, syscall)
//! - the hooks; `reference` (config, filter, kernel, maps, syscall): programs the benchmark
//!   measures the capture against
#![no_std]
#![no_main]
// Atomic adds on map values: the BPF target has no `core::sync::atomic` read-modify-write.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// On top of the workspace lints: nothing here is public outside the crate, and every unsafe
// block says why it is sound.
#![warn(unreachable_pub, clippy::undocumented_unsafe_blocks)]
#![allow(
    clippy::inline_always,
    reason = "a function left out of line becomes a BPF subprogram: at most five arguments, in \
              registers, and BTF the kernel must accept; the programs inline everything but the \
              bpf_loop callback"
)]

mod ancillary;
mod cgroup_mkdir;
mod config;
mod copy;
mod counters;
mod filter;
mod kernel;
mod maps;
mod payload;
mod receiver;
mod record;
mod reference;
mod sched_process_fork;
mod sendmsg;
mod sock_recv_length;
mod sock_send_length;
mod sockets;
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
