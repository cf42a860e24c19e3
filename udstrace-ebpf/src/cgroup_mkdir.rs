//! Containers that live a millisecond: every cgroup (v2) created during the capture is sent
//! to userspace with its path, so that a message's `cgroup_id` names its container even when
//! the container has exited, and its cgroup is gone, before userspace could look it up.
//!
//! A raw tracepoint (4.17+; the kernel fills in the path only while the tracepoint is on). It
//! fires for the legacy (v1) hierarchies too, whose ids are another numbering: only cgroups of
//! the hierarchy the current task's own v2 cgroup belongs to are sent.
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros call each program with its context by value"
)]

use core::ffi::c_void;

use aya_ebpf::{helpers::generated, macros::raw_tracepoint, programs::RawTracePointContext};
use udstrace_common::record::{CgroupRecord, CGROUP_PATH_MAX, CGROUP_RECORD_LEN, KIND_CGROUP};

use crate::{
    config, kernel,
    maps::{wakeup_flag, BPF_RB_AVAIL_DATA, EVENTS},
};

/// match-proto: v6.18 include/trace/events/cgroup.h: DEFINE_EVENT(cgroup, cgroup_mkdir, TP_PROTO(struct cgroup *cgrp, const char *path))
#[raw_tracepoint(tracepoint = "cgroup_mkdir")]
fn cgroup_mkdir(ctx: RawTracePointContext) -> i32 {
    let layout = config::layout();
    let cgrp: u64 = ctx.arg(0);
    let path: u64 = ctx.arg(1);
    // The default hierarchy: the one the current task's v2 cgroup is in.
    // SAFETY: a helper with no arguments.
    let task = unsafe { generated::bpf_get_current_task() };
    let own_root = kernel::read::<u64>(task, layout.task_cgroups)
        .and_then(|css| kernel::read::<u64>(css, layout.css_set_dfl_cgrp))
        .and_then(|own| kernel::read::<u64>(own, layout.cgroup_root));
    let root = kernel::read::<u64>(cgrp, layout.cgroup_root);
    if own_root.is_err() || own_root != root {
        return 0;
    }
    let Ok(id) = kernel::read::<u64>(cgrp, layout.cgroup_kn)
        .and_then(|kn| kernel::read::<u64>(kn, layout.kernfs_node_id))
    else {
        return 0;
    };
    // A cgroup not recorded is looked up in the hierarchy by userspace, as one created before
    // the capture: nothing is lost but the chance to name a container that already left.
    let Some(mut slot) = EVENTS.reserve::<CgroupRecord>(0) else {
        return 0;
    };
    let rec = slot.as_mut_ptr();
    // SAFETY: `rec` is the reserved record; the path's source is checked by the helper, which
    // writes at most CGROUP_PATH_MAX bytes, its terminating NUL included.
    let copied = unsafe {
        (*rec).kind = KIND_CGROUP;
        (*rec).header_len = CGROUP_RECORD_LEN as u16;
        (*rec).flags = 0;
        (*rec).id = id;
        (*rec).reserved = 0;
        generated::bpf_probe_read_kernel_str(
            (*rec).path.as_mut_ptr().cast::<c_void>(),
            CGROUP_PATH_MAX as u32,
            path as *const c_void,
        )
    };
    // SAFETY: as above. The count includes the NUL; an error leaves the path empty.
    unsafe {
        (*rec).path_len = if copied > 0 {
            copied.cast_unsigned() as u32 - 1
        } else {
            0
        }
    };
    // An idle capture learns of a new container at once: its name is read while it exists.
    slot.submit(wakeup_flag(EVENTS.query(BPF_RB_AVAIL_DATA)));
    0
}
