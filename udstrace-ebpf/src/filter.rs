//! Which sends the capture wants: the process filters (`-p`, `--uid`, `--comm`), and the
//! socket filters (`--type`, `--path`, and `--container`/`--pod`, which need the socket to name
//! the receiver).

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_uid_gid, generated};
use udstrace_common::{
    filter::{self, PathName},
    KernelLayout,
};

use crate::{
    config,
    kernel::{self, Reader},
    maps::{CGROUP_FILTER, COMM_FILTER, PATH_FILTER, PATH_NAME_FILTER, PID_FILTER, UID_FILTER},
    receiver,
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
    if filters & filter::PID_LIST != 0 && !config::pid_listed(tgid) {
        return false;
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

/// `--container`, `--pod`: whether the sender or the receiver of a message sent on socket
/// `sk` runs in one of the wanted containers: the sender's cgroup first (one helper call),
/// then the receiver's as the record would name it (see `receiver`).
#[inline(always)]
fn container_wanted<R: Reader>(sk: u64, layout: &KernelLayout) -> bool {
    // SAFETY: a helper with no arguments (4.18+).
    if cgroup_wanted(unsafe { generated::bpf_get_current_cgroup_id() }) {
        return true;
    }
    let u = R::unix_sock(sk);
    let peer = kernel::unix_peer::<R>(u, layout);
    let peer_ino = if peer == 0 {
        0
    } else {
        R::sock_ino(peer, layout)
    };
    // SAFETY: a helper with no arguments.
    let now = unsafe { generated::bpf_ktime_get_boot_ns() };
    let found = receiver::find::<R>(u, peer, peer_ino, now, None, layout);
    found.cgroup_id != 0 && cgroup_wanted(found.cgroup_id)
}

/// Whether cgroup (v2) `id` is one of the wanted containers' (`--container`, `--pod`).
#[inline(always)]
fn cgroup_wanted(id: u64) -> bool {
    // SAFETY: the map value is only tested for presence.
    unsafe { CGROUP_FILTER.get(id) }.is_some()
}

/// The type of Unix socket `sk`, if it is one the capture wants (`--type`, `--path`).
#[inline(always)]
pub(crate) fn unix_type<R: Reader>(sk: u64, layout: &KernelLayout) -> Option<u16> {
    let sock_type = kernel::unix_sock_type::<R>(sk, layout)?;
    let types = config::type_mask();
    if types != 0 && types & (1 << (sock_type & 31)) == 0 {
        return None;
    }
    let filters = config::filters();
    if filters & filter::PATHS != 0 && !path_wanted::<R>(sk, layout) {
        return None;
    }
    if filters & filter::CGROUPS != 0 && !container_wanted::<R>(sk, layout) {
        return None;
    }
    Some(sock_type)
}

/// `--path`: whether socket `sk` or its peer is bound to a wanted file or under a wanted
/// name. A socket without peer is left to userspace, which matches the names of the record
/// (the destination address of an unconnected datagram among them).
#[inline(always)]
fn path_wanted<R: Reader>(sk: u64, layout: &KernelLayout) -> bool {
    let u = R::unix_sock(sk);
    let peer = kernel::unix_peer::<R>(u, layout);
    if peer == 0 {
        return true;
    }
    let peer = R::unix_sock(peer);
    if file_wanted::<R>(u, layout) || file_wanted::<R>(peer, layout) {
        return true;
    }
    // One key for both names: the stack is the programs' scarcest resource.
    let mut name = NameOnStack {
        key: PathName::ZERO,
        slack: [0; kernel::NAME_SLACK],
    };
    if name_wanted::<R>(u, layout, &mut name) {
        return true;
    }
    name.key = PathName::ZERO;
    name_wanted::<R>(peer, layout, &mut name)
}

/// A name key on the stack, with the room after it that the verifier counts a name's copy
/// may use (`kernel::unix_path`).
#[repr(C)]
struct NameOnStack {
    key: PathName,
    slack: [u8; kernel::NAME_SLACK],
}

/// Whether Unix socket `u`'s (a `Reader::unix_sock`) bound file is in `PATH_FILTER`.
#[inline(always)]
fn file_wanted<R: Reader>(u: u64, layout: &KernelLayout) -> bool {
    // SAFETY: the map value is only tested for presence.
    kernel::unix_file::<R>(u, layout).is_some_and(|file| unsafe { PATH_FILTER.get(file) }.is_some())
}

/// Whether Unix socket `u`'s (a `Reader::unix_sock`) bound name is in `PATH_NAME_FILTER`,
/// read into `name` (all zeroes).
#[inline(always)]
fn name_wanted<R: Reader>(u: u64, layout: &KernelLayout, name: &mut NameOnStack) -> bool {
    let key = &mut name.key;
    key.len = u32::from(kernel::unix_path::<R>(u, layout, &mut key.name));
    // SAFETY: the map value is only tested for presence.
    key.len != 0 && unsafe { PATH_NAME_FILTER.get(key) }.is_some()
}
