//! Which sends the capture wants: the process filters (`-p`, `--uid`, `--comm`) and `--type`.

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_uid_gid};
use udstrace_common::{filter, KernelLayout};

use crate::{
    config, kernel,
    maps::{COMM_FILTER, PID_FILTER, UID_FILTER},
};

/// True when the current process is one to capture.
#[inline(always)]
pub(crate) fn wanted(tgid: u32) -> bool {
    if tgid == config::self_tgid() {
        return false;
    }
    let filters = config::filters();
    if filters == 0 {
        return true;
    }
    // SAFETY: the map value is only tested for presence, never read or kept (likewise below).
    if filters & filter::PIDS != 0 && unsafe { PID_FILTER.get(tgid) }.is_none() {
        return false;
    }
    if filters & filter::UIDS != 0 {
        let uid = bpf_get_current_uid_gid() as u32;
        // SAFETY: as above.
        if unsafe { UID_FILTER.get(uid) }.is_none() {
            return false;
        }
    }
    if filters & filter::COMMS != 0 {
        let comm = bpf_get_current_comm().unwrap_or([0; 16]);
        // SAFETY: as above.
        if unsafe { COMM_FILTER.get(comm) }.is_none() {
            return false;
        }
    }
    true
}

/// The type of Unix socket `sk`, if it is one the capture wants (`--type`).
#[inline(always)]
pub(crate) fn unix_type(sk: u64, layout: &KernelLayout) -> Option<u16> {
    let sock_type = kernel::unix_sock_type(sk, layout)?;
    let types = config::type_mask();
    if types != 0 && types & (1 << (sock_type & 31)) == 0 {
        return None;
    }
    Some(sock_type)
}
