//! Who will read a message, decided when it is sent: the process last seen sending on or
//! reading from the peer socket, else the sending socket's peer credentials (the process
//! that listened, connected or created the pair). Userspace falls back to the holders it
//! finds in /proc only when neither is known.

use udstrace_common::{
    record::{receiver, SendRecord},
    KernelLayout,
};

use crate::{
    kernel::{self, Comm, Reader},
    maps::{CredTask, SockState},
    sockets,
};

/// How long the command name and cgroup of a socket's credentials' process are taken from
/// the socket's state before they are read again (they change only at `exec` and when the
/// process moves to another cgroup).
const CRED_REFRESH_NS: u64 = 100_000_000;

/// Notes in the state of the socket a message was sent on (or read from, `recv`) that the
/// process of record `header` (already filled: pid, comm, cgroup) used it.
#[inline(always)]
pub(crate) fn note(state: &mut SockState, header: &SendRecord, recv: bool) {
    state.by = u32::from(if recv { receiver::READ } else { receiver::SENT });
    state.tgid = header.pid;
    state.cgroup_id = header.cgroup_id;
    kernel::store_comm(&mut state.comm, kernel::comm_words(&header.comm));
}

/// The process that will read a message: how it was known (`receiver::*`), its pid, command
/// and cgroup id.
#[derive(Clone, Copy)]
pub(crate) struct Receiver {
    pub(crate) by: u16,
    pub(crate) pid: u32,
    pub(crate) comm: Comm,
    pub(crate) cgroup_id: u64,
}

impl Receiver {
    const UNKNOWN: Self = Self {
        by: receiver::UNKNOWN,
        pid: 0,
        comm: [0; 2],
        cgroup_id: 0,
    };

    /// Copies it into the record `header`.
    #[inline(always)]
    pub(crate) fn fill(&self, header: &mut SendRecord) {
        header.receiver_by = self.by;
        header.receiver_pid = self.pid;
        header.reserved2 = 0;
        kernel::set_comm(&mut header.receiver_comm, self.comm);
        header.receiver_cgroup_id = self.cgroup_id;
    }
}

/// The receiver of a message sent on Unix socket `u` (as [`Reader::unix_sock`] gives it: a
/// pointer the verifier does not hold as trusted, so that loading a pointer through it costs
/// no search of the kernel's BTF) to `peer` (0: none) whose inode is `peer_ino` (0: none yet,
/// a connection not accepted), at `now` (boot clock, ns). `cred`: where `u`'s credentials'
/// process is kept (its state), if anywhere.
#[inline(always)]
pub(crate) fn find<R: Reader>(
    u: u64,
    peer: u64,
    peer_ino: u64,
    now: u64,
    cred: Option<&mut CredTask>,
    layout: &KernelLayout,
) -> Receiver {
    // A socket not yet accepted has had no user; its inode tells a reused address apart.
    if peer != 0 && peer_ino != 0 {
        if let Some(seen) = sockets::kept::<R>(peer, peer_ino) {
            if seen.by != 0 {
                return Receiver {
                    by: seen.by as u16,
                    pid: seen.tgid,
                    comm: seen.comm,
                    cgroup_id: seen.cgroup_id,
                };
            }
        }
    }
    by_credentials::<R>(u, now, cred, layout)
}

/// The process of Unix socket `u`'s peer credentials (`sk_peer_pid`), if it still runs: its thread
/// group leader, found through the `struct pid`'s list of tasks. Whether it runs is read at
/// every message; its pid, command name and cgroup (six reads through the helper: the task is
/// reached by `container_of`, where the verifier follows no type) are kept in `cache`, and
/// read again when older than `CRED_REFRESH_NS`.
#[inline(always)]
fn by_credentials<R: Reader>(
    u: u64,
    now: u64,
    cache: Option<&mut CredTask>,
    layout: &KernelLayout,
) -> Receiver {
    if u == 0 {
        return Receiver::UNKNOWN;
    }
    let Ok(pid) = R::read::<u64>(u, layout.sock_peer_pid) else {
        return Receiver::UNKNOWN;
    };
    if pid == 0 {
        return Receiver::UNKNOWN;
    }
    let Ok(first) = R::read::<u64>(pid, layout.pid_tgid_tasks) else {
        return Receiver::UNKNOWN;
    };
    if first == 0 {
        // The process has exited.
        return Receiver::UNKNOWN;
    }
    let task = first - u64::from(layout.task_tgid_link);
    if let Some(known) = cache.as_deref() {
        if known.pid == pid && now.wrapping_sub(known.read_ns) < CRED_REFRESH_NS {
            return Receiver {
                by: receiver::CRED,
                pid: known.tgid,
                comm: known.comm,
                cgroup_id: known.cgroup_id,
            };
        }
    }
    let Ok(tgid) = kernel::read::<u32>(task, layout.task_tgid) else {
        return Receiver::UNKNOWN;
    };
    let found = CredTask {
        pid,
        read_ns: now,
        cgroup_id: task_cgroup_id(task, layout),
        tgid,
        reserved: 0,
        comm: kernel::read::<Comm>(task, layout.task_comm).unwrap_or([0; 2]),
    };
    if let Some(cache) = cache {
        *cache = found;
    }
    Receiver {
        by: receiver::CRED,
        pid: found.tgid,
        comm: found.comm,
        cgroup_id: found.cgroup_id,
    }
}
/// The id of the cgroup (v2) of `task`: `task->cgroups->dfl_cgrp->kn->id`, 0 if unreadable.
#[inline(always)]
fn task_cgroup_id(task: u64, layout: &KernelLayout) -> u64 {
    let read = |base: u64, offset: u32| kernel::read::<u64>(base, offset).ok().filter(|&p| p != 0);
    read(task, layout.task_cgroups)
        .and_then(|css| read(css, layout.css_set_dfl_cgrp))
        .and_then(|cgroup| read(cgroup, layout.cgroup_kn))
        .and_then(|kn| kernel::read::<u64>(kn, layout.kernfs_node_id).ok())
        .unwrap_or(0)
}
