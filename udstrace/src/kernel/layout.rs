//! Finds the offsets of the kernel fields the programs read in the running kernel's BTF.
//!
//! This is what stands in for CO-RE: the eBPF object has no offset compiled in; it gets the
//! [`KernelLayout`] this module computes.

use udstrace_common::KernelLayout;

use crate::kernel::{arch::Arch, btf::Btf};

/// Why a field could not be located.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LayoutError {
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("kernel BTF: {0} is a bit field, which the programs cannot read")]
    BitField(String),
    #[error("kernel BTF has no enumerator {0}")]
    NoEnum(&'static str),
    #[error("kernel BTF: {0} is not a struct or union")]
    NotComposite(String),
}

/// The layout of the running kernel, from `btf`; the registers are those `arch` names.
pub(crate) fn kernel_layout(btf: &Btf, arch: &Arch) -> Result<KernelLayout, LayoutError> {
    let off = |s: &str, path: &str| offset_of(btf, s, path);
    let struct_size = |name: &str| size_of_struct(btf, name);
    let kind = |name: &str| btf.enum_value(name).and_then(|v| u32::try_from(v).ok());
    // `u8 iter_type` since 5.14; before, `unsigned int type` with the kind's bit or'ed with
    // the direction (bit 0).
    let (iter_type, iter_type_size, iter_type_mask) = match off("iov_iter", "iter_type") {
        Ok(at) => (at, member_size(btf, "iov_iter", "iter_type")?, 0xff),
        Err(_) => (
            off("iov_iter", "type")?,
            member_size(btf, "iov_iter", "type")?,
            !1,
        ),
    };
    if iter_type_size != 1 && iter_type_size != 4 {
        return Err(LayoutError::BitField("iov_iter.iter_type".into()));
    }
    let tgid = kind("PIDTYPE_TGID").ok_or(LayoutError::NoEnum("PIDTYPE_TGID"))?;
    // THREAD_SIZE is 16 KiB on x86_64 and on arm64 (4 KiB pages), doubled by KASAN.
    let thread_size = if btf.has_name("kasan_cache") {
        32 << 10
    } else {
        16 << 10
    };
    let (regs_syscall_nr, regs_args) = arch.regs_offsets(btf)?;
    Ok(KernelLayout {
        sock_family: off("sock", "__sk_common.skc_family")?,
        sock_type: off("sock", "sk_type")?,
        sock_socket: off("sock", "sk_socket")?,
        socket_inode: off("socket_alloc", "vfs_inode")? - off("socket_alloc", "socket")?,
        inode_ino: off("inode", "i_ino")?,
        unix_addr: off("unix_sock", "addr")?,
        unix_peer: off("unix_sock", "peer")?,
        unix_address_len: off("unix_address", "len")?,
        unix_address_name: off("unix_address", "name")?,
        regs_syscall_nr,
        regs_args,
        socket_sk: off("socket", "sk")?,
        msghdr_iter: off("msghdr", "msg_iter")?,
        iter_type,
        iter_type_size,
        iter_type_mask,
        iter_ubuf: kind("ITER_UBUF").unwrap_or(KernelLayout::NO_KIND),
        iter_iovec: kind("ITER_IOVEC").ok_or(LayoutError::NoEnum("ITER_IOVEC"))?,
        iter_kvec: kind("ITER_KVEC").ok_or(LayoutError::NoEnum("ITER_KVEC"))?,
        iter_bvec: kind("ITER_BVEC").ok_or(LayoutError::NoEnum("ITER_BVEC"))?,
        iter_offset: off("iov_iter", "iov_offset")?,
        iter_count: off("iov_iter", "count")?,
        iter_ptr: off("iov_iter", "kvec")?,
        iter_nr_segs: off("iov_iter", "nr_segs")?,
        bvec_page: off("bio_vec", "bv_page")?,
        bvec_len: off("bio_vec", "bv_len")?,
        bvec_offset: off("bio_vec", "bv_offset")?,
        bvec_size: struct_size("bio_vec")?,
        page_struct_size: struct_size("page")?,
        task_stack: off("task_struct", "stack")?,
        thread_size,
        regs_size: struct_size("pt_regs")?,
        task_tgid: off("task_struct", "tgid")?,
        task_pid: off("task_struct", "pid")?,
        msghdr_name: off("msghdr", "msg_name")?,
        msghdr_namelen: off("msghdr", "msg_namelen")?,
        msghdr_control: off("msghdr", "msg_control")?,
        msghdr_controllen: off("msghdr", "msg_controllen")?,
        task_files: off("task_struct", "files")?,
        files_fdt: off("files_struct", "fdt")?,
        fdtable_max_fds: off("fdtable", "max_fds")?,
        fdtable_fd: off("fdtable", "fd")?,
        file_inode: off("file", "f_inode")?,
        file_dentry: off("file", "f_path.dentry")?,
        dentry_name: off("dentry", "d_name.name")?,
        dentry_parent: off("dentry", "d_parent")?,
        inode_mode: off("inode", "i_mode")?,
        inode_sb: off("inode", "i_sb")?,
        sb_dev: off("super_block", "s_dev")?,
        sock_peer_pid: off("sock", "sk_peer_pid")?,
        pid_tgid_tasks: off("pid", "tasks")? + tgid * struct_size("hlist_head")?,
        task_tgid_link: off("task_struct", "pid_links")? + tgid * struct_size("hlist_node")?,
        task_comm: off("task_struct", "comm")?,
        task_cgroups: off("task_struct", "cgroups")?,
        css_set_dfl_cgrp: off("css_set", "dfl_cgrp")?,
        cgroup_kn: off("cgroup", "kn")?,
        kernfs_node_id: off("kernfs_node", "id")?,
        cgroup_root: off("cgroup", "root")?,
        unix_path_dentry: off("unix_sock", "path.dentry")?,
        dentry_inode: off("dentry", "d_inode")?,
        socket_file: off("socket", "file")?,
        task_cred: off("task_struct", "cred")?,
        cred_uid: off("cred", "uid")?,
        cred_gid: off("cred", "gid")?,
    })
}

/// Size in bytes of `struct name`.
fn size_of_struct(btf: &Btf, name: &str) -> Result<u32, LayoutError> {
    btf.struct_id(name)
        .and_then(|id| btf.size_of(id))
        .ok_or_else(|| LayoutError::NoStruct(name.to_string()))
}

/// Size in bytes of the member at `path` of `struct strukt`.
pub(crate) fn member_size(btf: &Btf, strukt: &str, path: &str) -> Result<u32, LayoutError> {
    let (_, type_id) = locate(btf, strukt, path)?;
    btf.size_of(type_id)
        .ok_or_else(|| LayoutError::NotComposite(format!("{strukt}.{path}")))
}

/// Byte offset of `path` (dot-separated members; anonymous structs and unions are searched
/// through) from the start of `struct strukt`.
pub(crate) fn offset_of(btf: &Btf, strukt: &str, path: &str) -> Result<u32, LayoutError> {
    locate(btf, strukt, path).map(|(offset, _)| offset)
}

/// Byte offset and type of `path` in `struct strukt`.
fn locate(btf: &Btf, strukt: &str, path: &str) -> Result<(u32, u32), LayoutError> {
    let mut current = btf
        .struct_id(strukt)
        .ok_or_else(|| LayoutError::NoStruct(strukt.to_string()))?;
    let mut bits = 0u32;
    let mut context = strukt.to_string();
    let mut parts = path.split('.').peekable();
    let mut last_type = 0;
    while let Some(name) = parts.next() {
        let (member_bits, type_id, bitfield) =
            find_member(btf, current, name).ok_or_else(|| LayoutError::NoMember {
                strukt: context.clone(),
                member: name.to_string(),
            })?;
        bits += member_bits;
        last_type = type_id;
        context = format!("{context}.{name}");
        if parts.peek().is_some() {
            current = btf.resolve(type_id);
            if btf.members(current).is_empty() {
                return Err(LayoutError::NotComposite(context));
            }
        } else if bitfield != 0 || member_bits % 8 != 0 {
            return Err(LayoutError::BitField(context));
        }
    }
    Ok((bits / 8, last_type))
}

/// The member called `name` of struct or union `id` (looking into anonymous members): its
/// bit offset, type and bit field size.
fn find_member(btf: &Btf, id: u32, name: &str) -> Option<(u32, u32, u32)> {
    for m in btf.members(id) {
        if m.name == name {
            return Some((m.bit_offset, m.type_id, m.bitfield_size));
        }
        if m.name.is_empty() {
            if let Some((bits, ty, bf)) = find_member(btf, btf.resolve(m.type_id), name) {
                return Some((m.bit_offset + bits, ty, bf));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the running kernel's BTF: every field the programs need is found, at an offset
    /// inside its struct, and `pt_regs` matches the architecture's ABI.
    #[test]
    fn finds_every_field_in_this_kernel() {
        let Ok(btf) = Btf::from_file(std::path::Path::new("/sys/kernel/btf/vmlinux")) else {
            panic!("this test needs /sys/kernel/btf/vmlinux");
        };
        let arch = Arch::running().unwrap();
        let l = kernel_layout(&btf, arch).unwrap();
        if arch.name == "x86_64" {
            // x86_64 struct pt_regs is ABI: orig_ax is the 16th 8-byte slot, di the 15th.
            assert_eq!(l.regs_syscall_nr, 15 * 8);
            assert_eq!(l.regs_args, [14 * 8, 13 * 8, 12 * 8, 7 * 8, 9 * 8, 8 * 8]);
        } else {
            // arm64: regs[31], sp, pc, pstate, then orig_x0 and syscallno.
            assert_eq!(l.regs_syscall_nr, 35 * 8);
            assert_eq!(l.regs_args, [34 * 8, 8, 16, 24, 32, 40]);
        }
        // The userspace ABI's struct msghdr starts with msg_name too.
        assert_eq!(l.msghdr_name, 0);
        // __sk_common comes first in struct sock.
        assert!(l.sock_family < 32);
        assert!(l.unix_peer > l.unix_addr);
        assert_eq!(l.unix_address_len, 4);
        assert!(matches!(
            offset_of(&btf, "sock", "no_such_field"),
            Err(LayoutError::NoMember { .. })
        ));
        assert!(matches!(
            offset_of(&btf, "no_such_struct", "x"),
            Err(LayoutError::NoStruct(_))
        ));
    }
}
