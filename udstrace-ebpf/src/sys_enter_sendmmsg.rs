//! Tracepoint backend: `syscalls:sys_enter_sendmmsg`.
//!
//! match-proto:v2.6.33:include/trace/syscall.h:sys_enter_sendmmsg(int fd, struct mmsghdr
//!     *msg, unsigned int vlen, unsigned int flags)
//! `sendmmsg` calls the protocol's sendmsg once per message; `sock_send_length` cannot tell
//! which message of the vector it is seeing, so this resets a per-thread index at entry that
//! `sock_send_length` then advances.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};

use crate::{capture, maps::MMSG_INDEX};

#[tracepoint(category = "syscalls", name = "sys_enter_sendmmsg")]
pub fn sys_enter_sendmmsg(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if capture::wanted((pid_tgid >> 32) as u32) {
        let _ = MMSG_INDEX.insert(pid_tgid as u32, 0u32, 0);
    }
    0
}
