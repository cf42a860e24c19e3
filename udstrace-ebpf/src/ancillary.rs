//! A message's control data: one `AncillaryRecord`, passed descriptors resolved to their files.
//!
//! The record goes ahead of the message's records, with the raw control messages
//! (`SCM_RIGHTS`, `SCM_CREDENTIALS`, ...) and the passed descriptors resolved to the files
//! they are while the sender still has them open.
//!
//! Called where the control data is still there: at the entry of the hooked send functions
//! (function-hook backends; the kernel's copy of it in `msg_control`) and in the send
//! tracepoint (the sender's own buffer, from the system call's `struct msghdr`). Userspace
//! attaches the record to the next message the same thread sends on the same socket; one
//! whose send fails is replaced by the thread's next one.

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, generated};
use udstrace_common::{
    counter,
    record::{
        ANCILLARY_RECORD_LEN, CONTROL_MAX, FDS_MAX, FD_DIRS, FD_DIR_MAX, FD_NAME_MAX,
        KIND_ANCILLARY,
    },
    AncillaryRecord, FdInfo,
};

use crate::{
    config,
    counters::count,
    kernel::{self, Mem},
    maps::{BPF_RB_NO_WAKEUP, EVENTS},
};

/// `struct cmsghdr` (LP64: x86_64 and arm64): `size_t cmsg_len; int cmsg_level; int cmsg_type;`,
/// data at 16.
const CMSG_HDR: u64 = 16;
const SOL_SOCKET: u32 = 1;
const SCM_RIGHTS: u32 = 1;
/// Control messages looked at for the `SCM_RIGHTS` one.
const MAX_CMSGS: u32 = 8;

/// Sends the ancillary record of a message about to be (or just) sent on `sk`, if the
/// message has control data.
#[inline(always)]
pub(crate) fn emit(sk: u64, control: Mem) {
    if control.ptr == 0 || control.len < CMSG_HDR {
        return;
    }
    let Some(mut slot) = EVENTS.reserve::<AncillaryRecord>(0) else {
        count(counter::LOST_SEGMENTS, 1);
        return;
    };
    let rec = slot.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut cap = control.len;
    if cap > CONTROL_MAX as u64 {
        cap = CONTROL_MAX as u64;
    }
    // SAFETY: `rec` is the reserved record, CONTROL_MAX bytes of control fit, the source is
    // checked by the helpers.
    let rc = unsafe {
        (*rec).kind = KIND_ANCILLARY;
        (*rec).header_len = ANCILLARY_RECORD_LEN as u16;
        (*rec).flags = 0;
        (*rec).pid = (pid_tgid >> 32) as u32;
        (*rec).tid = pid_tgid as u32;
        (*rec).sock_id = sk;
        (*rec).control_len = control.len as u32;
        (*rec).reserved = 0;
        let dst = (*rec).control.as_mut_ptr().cast::<c_void>();
        let len = (cap & (CONTROL_MAX as u64 * 2 - 1)) as u32;
        control.copy(control.ptr, dst, len)
    };
    // SAFETY: as above.
    unsafe { (*rec).cap_len = if rc == 0 { cap as u32 } else { 0 } };

    let (rights, nfds) = find_rights(control);
    let mut resolved = 0u32;
    for i in 0..FDS_MAX {
        if i as u64 >= nfds {
            break;
        }
        let Ok(fd) = control.read::<i32>(rights + i as u64 * 4) else {
            break;
        };
        // SAFETY: `i` < FDS_MAX, inside the reserved record.
        resolve(fd, unsafe { &mut (*rec).fds[i] });
        resolved += 1;
    }
    // SAFETY: as above.
    unsafe { (*rec).nfds = resolved };
    // No wakeup: the message's records follow.
    slot.submit(BPF_RB_NO_WAKEUP);
}

/// Address and descriptor count of the first `SCM_RIGHTS` control message; count 0 if none.
#[inline(always)]
fn find_rights(control: Mem) -> (u64, u64) {
    let mut off = 0u64;
    for _ in 0..MAX_CMSGS {
        if off + CMSG_HDR > control.len {
            break;
        }
        let Ok(hdr) = control.read::<[u64; 2]>(control.ptr + off) else {
            break;
        };
        let len = hdr[0];
        if len < CMSG_HDR || off + len > control.len {
            break;
        }
        if hdr[1] as u32 == SOL_SOCKET && (hdr[1] >> 32) as u32 == SCM_RIGHTS {
            return (control.ptr + off + CMSG_HDR, (len - CMSG_HDR) / 4);
        }
        off += (len + 7) & !7;
    }
    (0, 0)
}

/// What descriptor `fd` of the current process refers to: `current->files->fdt->fd[fd]`,
/// its inode (mode, number, device) and its dentry's name.
#[inline(always)]
fn resolve(fd: i32, info: &mut FdInfo) {
    info.fd = fd;
    info.mode = 0;
    info.name_len = 0;
    info.dev = 0;
    info.depth = 0;
    info.at_root = 0;
    info.reserved = 0;
    info.ino = 0;
    let _ = try_resolve(fd, info);
}

#[inline(always)]
fn try_resolve(fd: i32, info: &mut FdInfo) -> Result<(), i64> {
    let l = config::layout();
    // SAFETY: a helper with no arguments.
    let task = unsafe { generated::bpf_get_current_task() };
    let files: u64 = kernel::read(task, l.task_files)?;
    let fdt: u64 = kernel::read(files, l.files_fdt)?;
    let max_fds: u32 = kernel::read(fdt, l.fdtable_max_fds)?;
    if fd < 0 || fd.cast_unsigned() >= max_fds {
        return Err(-1);
    }
    let table: u64 = kernel::read(fdt, l.fdtable_fd)?;
    let file: u64 = kernel::read(table + i64::from(fd).cast_unsigned() * 8, 0)?;
    if file == 0 {
        return Err(-1);
    }
    let inode: u64 = kernel::read(file, l.file_inode)?;
    info.ino = kernel::read(inode, l.inode_ino)?;
    let sb: u64 = kernel::read(inode, l.inode_sb)?;
    info.dev = kernel::read(sb, l.sb_dev)?;
    let dentry: u64 = kernel::read(file, l.file_dentry)?;
    let name: u64 = kernel::read(dentry, l.dentry_name)?;
    // SAFETY: the destination is FD_NAME_MAX bytes; the helper checks the source.
    let n = unsafe {
        generated::bpf_probe_read_kernel_str(
            info.name.as_mut_ptr().cast::<c_void>(),
            FD_NAME_MAX as u32,
            name as *const c_void,
        )
    };
    if n > 0 {
        info.name_len = (n - 1).cast_unsigned() as u16;
    }
    // A non-zero mode says the fields above are valid.
    info.mode = kernel::read(inode, l.inode_mode)?;
    // The directories above it, up to the root of its file system (whose parent is itself).
    let mut d = dentry;
    for level in 0..FD_DIRS {
        let parent: u64 = kernel::read(d, l.dentry_parent)?;
        if parent == d || parent == 0 {
            info.at_root = 1;
            break;
        }
        let name: u64 = kernel::read(parent, l.dentry_name)?;
        // SAFETY: each entry is FD_DIR_MAX bytes; the helper checks the source.
        let n = unsafe {
            generated::bpf_probe_read_kernel_str(
                info.dirs[level].as_mut_ptr().cast::<c_void>(),
                FD_DIR_MAX as u32,
                name as *const c_void,
            )
        };
        if n <= 0 {
            break;
        }
        info.depth = level as u8 + 1;
        d = parent;
    }
    if info.at_root == 0 && info.depth as usize == FD_DIRS {
        let parent: u64 = kernel::read(d, l.dentry_parent)?;
        if parent == d {
            info.at_root = 1;
        }
    }
    Ok(())
}
