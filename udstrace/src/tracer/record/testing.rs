//! Builds raw records the way the kernel programs do; for tests of everything downstream.
use super::{
    offset_of, CgroupRecord, SendRecord, CGROUP_RECORD_LEN, KIND_CGROUP, KIND_SEND, SEND_RECORD_LEN,
};

/// Fields of a record to encode; payload follows.
#[derive(Clone, Debug)]
pub(crate) struct RawRecord {
    pub(crate) flags: u32,
    pub(crate) ts_boot_ns: u64,
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) sock_ino: u64,
    pub(crate) peer_ino: u64,
    pub(crate) sock_id: Option<u64>,
    pub(crate) peer_id: Option<u64>,
    pub(crate) stream_offset: u64,
    pub(crate) msg_len: u64,
    pub(crate) seg_offset: u64,
    pub(crate) lost_segments: u64,
    pub(crate) sock_type: u16,
    pub(crate) comm: &'static [u8],
    pub(crate) path: &'static [u8],
    pub(crate) peer_path: &'static [u8],
    /// The receiver the kernel named: pid, how (`record::receiver`), command, cgroup id.
    pub(crate) receiver: (u32, u16, &'static [u8], u64),
    pub(crate) payload: Vec<u8>,
}

impl Default for RawRecord {
    fn default() -> Self {
        Self {
            flags: udstrace_common::record::flags::LAST,
            ts_boot_ns: 1_000_000_000,
            pid: 100,
            tid: 101,
            sock_ino: 5000,
            peer_ino: 5001,
            sock_id: None,
            peer_id: None,
            stream_offset: 0,
            msg_len: 5,
            seg_offset: 0,
            lost_segments: 0,
            sock_type: 1,
            comm: b"client",
            path: b"",
            peer_path: b"/run/test.sock",
            receiver: (0, 0, b"", 0),
            payload: b"hello".to_vec(),
        }
    }
}

impl RawRecord {
    #[must_use]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SEND_RECORD_LEN];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(offset_of!(SendRecord, kind), &KIND_SEND.to_ne_bytes());
        put(
            offset_of!(SendRecord, header_len),
            &(SEND_RECORD_LEN as u16).to_ne_bytes(),
        );
        put(offset_of!(SendRecord, flags), &self.flags.to_ne_bytes());
        put(
            offset_of!(SendRecord, ts_boot_ns),
            &self.ts_boot_ns.to_ne_bytes(),
        );
        put(offset_of!(SendRecord, pid), &self.pid.to_ne_bytes());
        put(offset_of!(SendRecord, tid), &self.tid.to_ne_bytes());
        put(offset_of!(SendRecord, uid), &1000u32.to_ne_bytes());
        put(offset_of!(SendRecord, gid), &1001u32.to_ne_bytes());
        put(
            offset_of!(SendRecord, sock_ino),
            &self.sock_ino.to_ne_bytes(),
        );
        put(
            offset_of!(SendRecord, peer_ino),
            &self.peer_ino.to_ne_bytes(),
        );
        // Kernel identities: as given, or stand-ins derived from the inodes.
        let derive = |ino: u64| {
            if ino == 0 {
                0
            } else {
                ino | 0xffff_0000_0000_0000
            }
        };
        let sock_id = self.sock_id.unwrap_or(derive(self.sock_ino));
        let peer_id = self.peer_id.unwrap_or(derive(self.peer_ino));
        put(offset_of!(SendRecord, sock_id), &sock_id.to_ne_bytes());
        put(offset_of!(SendRecord, peer_id), &peer_id.to_ne_bytes());
        put(
            offset_of!(SendRecord, stream_offset),
            &self.stream_offset.to_ne_bytes(),
        );
        put(offset_of!(SendRecord, msg_len), &self.msg_len.to_ne_bytes());
        put(
            offset_of!(SendRecord, seg_offset),
            &self.seg_offset.to_ne_bytes(),
        );
        put(
            offset_of!(SendRecord, lost_segments),
            &self.lost_segments.to_ne_bytes(),
        );
        put(
            offset_of!(SendRecord, cap_len),
            &(self.payload.len() as u32).to_ne_bytes(),
        );
        put(offset_of!(SendRecord, syscall), &1i32.to_ne_bytes());
        put(
            offset_of!(SendRecord, sock_type),
            &self.sock_type.to_ne_bytes(),
        );
        put(
            offset_of!(SendRecord, path_len),
            &(self.path.len() as u16).to_ne_bytes(),
        );
        put(
            offset_of!(SendRecord, peer_path_len),
            &(self.peer_path.len() as u16).to_ne_bytes(),
        );
        put(offset_of!(SendRecord, comm), self.comm);
        put(offset_of!(SendRecord, path), self.path);
        put(offset_of!(SendRecord, peer_path), self.peer_path);
        let (pid, by, comm, cgroup) = self.receiver;
        put(offset_of!(SendRecord, receiver_pid), &pid.to_ne_bytes());
        put(offset_of!(SendRecord, receiver_by), &by.to_ne_bytes());
        put(offset_of!(SendRecord, receiver_comm), comm);
        put(
            offset_of!(SendRecord, receiver_cgroup_id),
            &cgroup.to_ne_bytes(),
        );
        b.extend_from_slice(&self.payload);
        b
    }
}

/// A cgroup record of cgroup `id` created at `path`, as the `cgroup_mkdir` program writes it.
pub(crate) fn cgroup_record(id: u64, path: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; CGROUP_RECORD_LEN];
    b[..2].copy_from_slice(&KIND_CGROUP.to_ne_bytes());
    b[2..4].copy_from_slice(&(CGROUP_RECORD_LEN as u16).to_ne_bytes());
    b[offset_of!(CgroupRecord, id)..][..8].copy_from_slice(&id.to_ne_bytes());
    b[offset_of!(CgroupRecord, path_len)..][..4]
        .copy_from_slice(&(path.len() as u32).to_ne_bytes());
    b[offset_of!(CgroupRecord, path)..][..path.len()].copy_from_slice(path);
    b
}
