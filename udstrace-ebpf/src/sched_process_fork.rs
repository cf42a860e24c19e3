//! `--follow`: children of the captured processes are captured too.
//!
//! A raw tracepoint (4.17+; no BTF typing needed). It fires in the parent, after the child is
//! set up and before it runs, so the child's first send is already wanted.
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros call each program with its context by value"
)]

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};
use udstrace_common::filter;

use crate::{config, kernel, maps::PID_FILTER};

/// match-proto: v6.18 include/trace/events/sched.h: TRACE_EVENT(sched_process_fork, TP_PROTO(struct task_struct *parent, struct task_struct *child))
#[raw_tracepoint(tracepoint = "sched_process_fork")]
fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    if config::filters() & filter::FOLLOW == 0 {
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is not kept.
    if unsafe { PID_FILTER.get(parent) }.is_none() {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    if let Ok(tgid) = kernel::read::<i32>(child, config::layout().task_tgid) {
        // A new thread has the parent's tgid: inserting it again is harmless.
        let _ = PID_FILTER.insert(tgid.cast_unsigned(), 1, 0);
    }
    0
}
