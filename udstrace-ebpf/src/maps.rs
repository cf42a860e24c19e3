//! Every map the programs use.

use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, ProgramArray, RingBuf},
};
use udstrace_common::{
    filter::{PathKey, PathName},
    maps::CONTINUE_SLOTS,
    record::SEGMENT_MAX,
    DirectMap, SendRecord,
};

use crate::payload::SEG_NONE;

/// Records to userspace. Userspace sets the size at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(16 << 20, 0);

/// `bpf_ringbuf_query` and `bpf_ringbuf_output` flags for `EVENTS` (include/uapi/linux/bpf.h).
pub(crate) const BPF_RB_AVAIL_DATA: u64 = 0;
pub(crate) const BPF_RB_NO_WAKEUP: u64 = 1;
pub(crate) const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h, 5.5+): userspace reads and writes the map
/// through shared memory, with no system call (and none of the privileges one needs).
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Where the kernel's direct map and `struct page` array are (see `DirectMap`), written by
/// userspace before any program is attached; read only for payloads in pages.
#[map]
pub(crate) static DIRECT_MAP: Array<DirectMap> = Array::with_max_entries(1, 0);

/// Set (to 1) by userspace when it stops draining often: the next record wakes it.
#[map]
pub(crate) static WAKE_REQUEST: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// The `bpf_ringbuf_output`/`submit` flag of a record, with `waiting` bytes in the buffer
/// before it: a wakeup when the buffer is filling up (an eighth of it, `WAKEUP_BYTES`), or
/// when userspace asked for one by going idle (the flag is taken: one wakeup per request);
/// otherwise none, and userspace's short drain timer finds the record. So a busy capture is
/// drained in batches, and an idle one sleeps until a record comes, then gets it at once.
#[inline(always)]
pub(crate) fn wakeup_flag(waiting: u64) -> u64 {
    if waiting >= crate::config::wakeup_bytes() {
        return BPF_RB_FORCE_WAKEUP;
    }
    match WAKE_REQUEST.get_ptr_mut(0) {
        // SAFETY: a map value. Two CPUs taking the same request both wake userspace: harmless.
        Some(request) if unsafe { *request } != 0 => {
            // SAFETY: as above.
            unsafe { *request = 0 };
            BPF_RB_FORCE_WAKEUP
        }
        _ => BPF_RB_NO_WAKEUP,
    }
}

/// Room for a segment's payload: twice the segment size, so that any offset below
/// `SEGMENT_MAX` plus any copy of at most `SEGMENT_MAX` bytes stays inside it in a way the
/// verifier can see with masks alone.
pub(crate) const SCRATCH_DATA: usize = 2 * 65_536;
const _: () = assert!(SEGMENT_MAX as usize <= SCRATCH_DATA / 2);

/// The state of the copy loop, then the record being built: its header directly followed by
/// its payload, so that the record goes out in one piece.
#[repr(C)]
pub(crate) struct Scratch {
    pub(crate) copy: CopyState,
    pub(crate) header: SendRecord,
    pub(crate) data: [u8; SCRATCH_DATA],
}

/// State of the copy loop (see `copy::copy_step`).
#[repr(C)]
pub(crate) struct CopyState {
    /// Bytes still to copy (after the snap length cut).
    pub(crate) remaining: u64,
    /// The current buffer and what is left of it.
    pub(crate) cur_ptr: u64,
    pub(crate) cur_left: u64,
    /// The segment array (iovec, kvec or bio_vec), its length, and the next entry to read.
    pub(crate) iov_base: u64,
    pub(crate) iov_count: u64,
    pub(crate) iov_index: u64,
    /// Bytes of the first segments already consumed before this message (`iov_offset`).
    pub(crate) skip: u64,
    /// Offset in the message of the segment being filled, and how full it is.
    pub(crate) seg_offset: u64,
    pub(crate) fill: u64,
    pub(crate) base_offset: u64,
    pub(crate) msg_len: u64,
    pub(crate) flags: u32,
    /// What the array describes (`payload::SEG_*`).
    pub(crate) seg_kind: u32,
    /// Non-zero when the current buffer is kernel memory.
    pub(crate) cur_kernel: u32,
    /// Non-zero from the start of a message's copy to its last record.
    pub(crate) busy: u32,
}

impl CopyState {
    /// The state at the start of a message of `msg_len` bytes starting at `base_offset` in
    /// its stream, with record flags `flags`: nothing copied, the slot busy.
    ///
    /// Field by field, each store volatile: as one struct literal, LLVM merges the zero stores
    /// into a call of a byte-by-byte `memset` (64 bytes: some 300 instructions per message).
    #[inline(always)]
    pub(crate) fn start(&mut self, msg_len: u64, base_offset: u64, flags: u32) {
        let zero = |field: &mut u64| {
            // SAFETY: a store to a field of `self`.
            unsafe { core::ptr::write_volatile(field, 0) }
        };
        self.remaining = msg_len;
        zero(&mut self.cur_ptr);
        zero(&mut self.cur_left);
        zero(&mut self.iov_base);
        zero(&mut self.iov_count);
        zero(&mut self.iov_index);
        zero(&mut self.skip);
        zero(&mut self.seg_offset);
        zero(&mut self.fill);
        self.base_offset = base_offset;
        self.msg_len = msg_len;
        self.flags = flags;
        self.seg_kind = 0;
        self.cur_kernel = 0;
        self.busy = 1;
    }
}

/// What the entry of a send function saw, kept per thread until the function returns
/// (function-hook backends). The message's buffers are noted before the kernel consumes
/// them; the return value says how much of them it took.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SendEntry {
    /// The `struct sock` and `struct msghdr` of the call.
    pub(crate) sk: u64,
    pub(crate) msg: u64,
    /// The payload: a buffer (`ptr`, `len`) or an array (`ptr`, `len` entries, `skip`).
    pub(crate) ptr: u64,
    pub(crate) len: u64,
    pub(crate) skip: u64,
    /// `payload::SEG_*`, or `payload::SEG_NONE` when the payload cannot be read.
    pub(crate) kind: u32,
    /// Calls of a hooked function made by another hooked function on the same message
    /// (`unix_seqpacket_sendmsg` calls `unix_dgram_sendmsg`): only the outer one records.
    pub(crate) nested: u32,
    /// `msg_name` and `msg_namelen`: the destination address, for a socket without peer.
    pub(crate) name: u64,
    pub(crate) name_len: i32,
    /// Non-zero for a receive function.
    pub(crate) recv: u32,
    /// Bytes the iterator described at entry (`count`): at most what a receive can fill.
    pub(crate) total: u64,
}

impl SendEntry {
    /// A call on `sk` with message `msg` whose payload cannot be read.
    #[inline(always)]
    pub(crate) const fn unreadable(sk: u64, msg: u64) -> Self {
        Self {
            sk,
            msg,
            ptr: 0,
            len: 0,
            skip: 0,
            kind: SEG_NONE,
            nested: 0,
            name: 0,
            name_len: 0,
            recv: 0,
            total: 0,
        }
    }
}

/// Per thread (pid_tgid) inside a hooked send or receive function: what its entry saw.
#[map]
pub(crate) static SEND_ENTRIES: LruHashMap<u64, SendEntry> =
    LruHashMap::with_max_entries(16_384, 0);

/// One `Scratch` per CPU, indexed by CPU number (a per-CPU array cannot hold values this
/// large). Programs run with preemption disabled, so a CPU's slot has one user at a time.
/// Userspace sets the number of entries to the number of possible CPUs.
#[map]
pub(crate) static SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// Per thread part-way through a `sendmmsg` vector (tracepoint backend): which message
/// comes next (see `sock_send_length::mmsg_index`).
#[map]
pub(crate) static MMSG_NEXT: LruHashMap<u32, MmsgNext> = LruHashMap::with_max_entries(16_384, 0);

/// A `sendmmsg` in progress: the vector, the index of the next message, and the length the
/// kernel sent of the one before it (which it writes to that entry's `msg_len` before going
/// on).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct MmsgNext {
    pub(crate) vector: u64,
    pub(crate) next: u32,
    pub(crate) sent: u32,
}

/// Global counters userspace reads at the end of a capture, indexed by
/// `udstrace_common::counter` (see `counters::count`).
#[map]
pub(crate) static COUNTERS: Array<u64> =
    Array::with_max_entries(udstrace_common::counter::COUNT, BPF_F_MMAPABLE);

/// Processes (tgid) to capture when the `PIDS` filter is on; with `--follow` the fork hook
/// adds their children.
#[map]
pub(crate) static PID_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(16_384, 0);

/// Command names (`comm`, NUL-padded) to capture when the `COMMS` filter is on.
#[map]
pub(crate) static COMM_FILTER: HashMap<[u8; 16], u8> = HashMap::with_max_entries(256, 0);

/// User ids to capture when the `UIDS` filter is on.
#[map]
pub(crate) static UID_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// The process behind a socket's peer credentials as last read (see
/// `receiver::by_credentials`): its `struct pid`, when it was read (boot clock, ns), its
/// cgroup, pid and command name.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct CredTask {
    pub(crate) pid: u64,
    pub(crate) read_ns: u64,
    pub(crate) cgroup_id: u64,
    pub(crate) tgid: u32,
    pub(crate) reserved: u32,
    pub(crate) comm: crate::kernel::Comm,
}

/// What the programs keep per socket (see `sockets`). In `SOCKETS`, valid while `ino` is the
/// socket's inode (a new socket in a closed one's memory starts afresh); in `SOCK_STORAGE` it
/// lives and dies with the socket, and `ino` is not used.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SockState {
    pub(crate) ino: u64,
    /// Offsets in its streams of the next byte the socket sends, and receives (`--recv`).
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// The process last seen sending on it or reading from it, the one that will read what
    /// its peer sends (see `receiver`): its cgroup, pid, how it used the socket
    /// (`udstrace_common::record::receiver`: `SENT` or `READ`; 0 until known) and command
    /// name.
    pub(crate) cgroup_id: u64,
    pub(crate) tgid: u32,
    pub(crate) by: u32,
    pub(crate) comm: crate::kernel::Comm,
    /// The process of the socket's peer credentials, as last read.
    pub(crate) cred: CredTask,
}

/// Per socket (`struct sock` address): its `SockState`, for the programs that read the socket
/// through the helper (see `sockets`). One lookup per message serves its byte offset, the note
/// of who used it and its credentials' process.
#[map]
pub(crate) static SOCKETS: LruHashMap<u64, SockState> = LruHashMap::with_max_entries(65_536, 0);

/// Per socket: its `SockState`, in the socket's own storage (`sk->sk_bpf_storage`), for the
/// programs that hold the socket as a typed pointer (see `sockets`).
#[btf_map]
pub(crate) static SOCK_STORAGE: SkStorage<SockState> = SkStorage::new();

/// A new socket's state, all zeroes: `sockets::state` inserts it from here (a value built on
/// the stack is zeroed by a byte-by-byte `memset` call).
#[unsafe(no_mangle)]
pub(crate) static SOCKET_START: SockState = SockState {
    ino: 0,
    sent: 0,
    received: 0,
    cgroup_id: 0,
    tgid: 0,
    by: 0,
    comm: [0; 2],
    cred: CredTask {
        pid: 0,
        read_ns: 0,
        cgroup_id: 0,
        tgid: 0,
        reserved: 0,
        comm: [0; 2],
    },
};

/// Cgroup (v2) ids to capture when the `CGROUPS` filter is on: the wanted containers' cgroups
/// and those below them; userspace adds containers that start during the capture.
#[map]
pub(crate) static CGROUP_FILTER: HashMap<u64, u8> = HashMap::with_max_entries(16_384, 0);

/// Socket files (device, inode) to capture when the `PATHS` filter is on; userspace adds
/// files that appear (or are replaced) during the capture.
#[map]
pub(crate) static PATH_FILTER: HashMap<PathKey, u8> = HashMap::with_max_entries(1024, 0);

/// Bound names to capture when the `PATHS` filter is on.
#[map]
pub(crate) static PATH_NAME_FILTER: HashMap<PathName, u8> = HashMap::with_max_entries(256, 0);

// The record header is 8-byte aligned in its slot (see `kernel::comm_words`).
const _: () = assert!(core::mem::offset_of!(Scratch, header) % 8 == 0);
const _: () = assert!(core::mem::align_of::<Scratch>() == 8);
const _: () = assert!(
    core::mem::offset_of!(Scratch, data)
        == core::mem::offset_of!(Scratch, header) + udstrace_common::record::SEND_RECORD_LEN
);

/// The copy loop's continuation programs, for kernels without `bpf_loop` (see
/// `copy::continue_copy`), at `udstrace_common::maps::CONTINUE_FEXIT` and
/// `CONTINUE_KRETPROBE`. Userspace fills in the one of the backend it attaches.
#[map]
pub(crate) static COPY_CONTINUE: ProgramArray = ProgramArray::with_max_entries(CONTINUE_SLOTS, 0);
