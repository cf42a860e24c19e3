//! `--follow`: children of the captured processes are captured too.
//!
//! match-proto:include/trace/events/sched.h:TRACE_EVENT(sched_process_fork,
//!     TP_PROTO(struct task_struct *parent, struct task_struct *child))
//! A raw tracepoint (4.17+; no BTF typing needed). It fires in the parent, after the child is
//! set up and before it runs, so the child's first send is already wanted.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};
use udstrace_common::filter;

use crate::{config, kernel, maps::PID_FILTER};

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    if config::filters() & filter::FOLLOW == 0 {
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is not kept.
    if unsafe { PID_FILTER.get(&parent) }.is_none() {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    if let Ok(tgid) = kernel::read::<i32>(child, config::layout().task_tgid) {
        // A new thread has the parent's tgid: inserting it again is harmless.
        let _ = PID_FILTER.insert(&(tgid as u32), &1, 0);
    }
    0
}
