//! The record the kernel programs write into the ring buffer for every segment of a message.
//!
//! One send call (a "message": the bytes one `write`, `sendmsg`, ... had accepted by the
//! kernel) is cut into segments of at most [`SEGMENT_MAX`] bytes, aligned on multiples of
//! `SEGMENT_MAX` from the start of the message. The kernel writes one record per segment it
//! has payload for, each a [`SendRecord`] header followed by `cap_len` payload bytes; the last
//! record of a message carries [`flags::LAST`]. Segments past the last record (payload cut by
//! the snap length, or not readable at all) have no record: userspace derives them from
//! `msg_len`. See docs/FORMAT.md.

/// Record kind of a [`SendRecord`].
pub const KIND_SEND: u16 = 1;

/// Largest number of payload bytes in one segment (and so in one packet). Below 65,527 so
/// that a segment fits one synthesised UDP datagram or TCP segment over IPv6.
pub const SEGMENT_MAX: u32 = 65_024;

/// Largest Unix socket path (`sizeof(sockaddr_un.sun_path)`).
pub const PATH_MAX: usize = 108;

/// Length of a task's command name (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// `SendRecord::syscall` of a 32-bit (compat) task: its system calls have the numbers of the
/// 32-bit ABI and its `msghdr` another layout, so the tracepoint backend does not decode them
/// (the payload is missing); the function hooks read the kernel's own copy and capture it.
pub const SYSCALL_COMPAT: i32 = -2;

/// Bits of [`SendRecord::flags`].
pub mod flags {
    /// The last record of its message.
    pub const LAST: u32 = 1 << 0;
    /// The kernel could not tell where the payload is (sendfile, splice, `io_uring`, a send from
    /// kernel context): the message's length is known, its bytes are not.
    pub const PAYLOAD_MISSING: u32 = 1 << 1;
    /// Reading the sender's memory failed part-way; the payload stops early.
    pub const READ_FAULT: u32 = 1 << 2;
    /// The payload was cut at the snap length.
    pub const SNAPLEN: u32 = 1 << 3;
    /// The message had more iovec entries than the program walks; the payload stops early.
    pub const IOV_LIMIT: u32 = 1 << 4;
    /// A receive (`--recv`): bytes a process read from the socket, not bytes it sent. The
    /// process fields are the reader's, `sock_*` the reading socket, `peer_*` the socket it
    /// is connected to, `stream_offset` counts the bytes the socket has received.
    pub const RECV: u32 = 1 << 5;
}

/// Unix socket types (`sk_type`), as the kernel numbers them.
#[repr(u16)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SockType {
    #[default]
    Stream = 1,
    Dgram = 2,
    SeqPacket = 5,
}

impl SockType {
    /// The socket type for a kernel `sk_type` value, if it is one a Unix socket can have.
    #[must_use]
    pub const fn from_raw(raw: u16) -> Option<Self> {
        match raw {
            1 => Some(Self::Stream),
            2 => Some(Self::Dgram),
            5 => Some(Self::SeqPacket),
            _ => None,
        }
    }

    /// The name used in packet comments and the text view.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Dgram => "dgram",
            Self::SeqPacket => "seqpacket",
        }
    }
}

/// Header of one ring-buffer record; `cap_len` payload bytes follow it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SendRecord {
    /// [`KIND_SEND`].
    pub kind: u16,
    /// `size_of::<SendRecord>()`, so that the header can grow.
    pub header_len: u16,
    /// Bits from [`flags`].
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()` when the send returned.
    pub ts_boot_ns: u64,
    /// Sender's process id (tgid) and thread id.
    pub pid: u32,
    pub tid: u32,
    /// Sender's real uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// Inode number of the sending socket.
    pub sock_ino: u64,
    /// Inode number of the connected peer socket, 0 if not connected or if the peer has no
    /// inode yet (a connection not yet accepted).
    pub peer_ino: u64,
    /// Kernel identity of the sending socket (its `struct sock` address). Userspace never
    /// writes it out: it only keys a capture-private hash (docs/FORMAT.md).
    pub sock_id: u64,
    /// Kernel identity of the peer socket, 0 if not connected.
    pub peer_id: u64,
    /// Offset in the sending socket's byte stream (counted by the kernel program since it first
    /// saw the socket) of this segment's first byte.
    pub stream_offset: u64,
    /// Bytes the kernel accepted for the whole message (the send's return value).
    pub msg_len: u64,
    /// Offset of this segment within its message (a multiple of [`SEGMENT_MAX`]).
    pub seg_offset: u64,
    /// Segments the kernel programs had lost (ring buffer full) when this record was written.
    pub lost_segments: u64,
    /// The cgroup (v2) of the sending task (for a receive, the reading task): the id of its
    /// cgroup directory, which names its container.
    pub cgroup_id: u64,
    /// Payload bytes that follow this header.
    pub cap_len: u32,
    /// System call the send came from (the running architecture's numbers), -1 when it
    /// cannot be read, [`SYSCALL_COMPAT`] when the task is a 32-bit one.
    pub syscall: i32,
    /// `sk_type` of the sending socket.
    pub sock_type: u16,
    /// Bytes used in `path` and `peer_path` (0: unnamed).
    pub path_len: u16,
    pub peer_path_len: u16,
    /// Explicit padding, reserved; zero.
    pub reserved: u16,
    /// Sender's command name, NUL padded.
    pub comm: [u8; COMM_LEN],
    /// Bound name of the sending socket (`sun_path`; abstract names start with a NUL byte).
    pub path: [u8; PATH_MAX],
    /// Bound name of the peer socket.
    pub peer_path: [u8; PATH_MAX],
    /// The process that will read the message, as the kernel knew it when it was sent (for
    /// a receive: the process at the other end); `receiver_by` says how ([`receiver`]), 0
    /// when it did not know.
    pub receiver_pid: u32,
    pub receiver_by: u16,
    /// Explicit padding, reserved; zero.
    pub reserved2: u16,
    /// Its command name (NUL padded; empty when the process had exited) and cgroup (v2) id
    /// (0: not known).
    pub receiver_comm: [u8; COMM_LEN],
    pub receiver_cgroup_id: u64,
}

/// Values of [`SendRecord::receiver_by`]: how the kernel knew the receiving process.
pub mod receiver {
    /// It did not.
    pub const UNKNOWN: u16 = 0;
    /// The last process seen sending on the peer socket.
    pub const SENT: u16 = 1;
    /// The last process seen reading from the peer socket (`--recv`).
    pub const READ: u16 = 2;
    /// The sending socket's peer credentials (`SO_PEERCRED`): the process that called
    /// `listen()` on the listener a connection was made to, that connected to this
    /// (accepted) socket, or that created the pair.
    pub const CRED: u16 = 3;
}

/// Size of [`SendRecord`] on the wire.
pub const SEND_RECORD_LEN: usize = core::mem::size_of::<SendRecord>();

const _: () = assert!(SEND_RECORD_LEN == 384);
const _: () = assert!(SEND_RECORD_LEN.is_multiple_of(8));

/// Record kind of an [`AncillaryRecord`].
pub const KIND_ANCILLARY: u16 = 2;

/// Bytes of a message's control data (`msg_control`) an [`AncillaryRecord`] carries; more is
/// cut (`control_len` says how much there was).
pub const CONTROL_MAX: usize = 512;

/// Passed file descriptors (`SCM_RIGHTS`) the kernel resolves per message. The kernel accepts
/// up to 253 (`SCM_MAX_FD`); the others are listed by number only.
pub const FDS_MAX: usize = 16;

/// Bytes of a passed file's name (its dentry's, the last path component) kept.
pub const FD_NAME_MAX: usize = 48;

/// Directories above a passed file whose names the kernel records, and their size.
pub const FD_DIRS: usize = 4;
pub const FD_DIR_MAX: usize = 32;

/// What a descriptor passed with `SCM_RIGHTS` referred to in the sender when it was sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FdInfo {
    /// The descriptor number in the sender.
    pub fd: i32,
    /// `i_mode` of the file's inode (type and permission bits); 0 when the descriptor could
    /// not be resolved (not open, or the tables could not be read).
    pub mode: u16,
    /// Bytes used in `name`.
    pub name_len: u16,
    /// The file system's device number, as the kernel encodes it (`major << 20 | minor`).
    pub dev: u32,
    /// Entries of `dirs` filled.
    pub depth: u8,
    /// Non-zero when `dirs` reach the root of the file system: they are the whole path
    /// inside it.
    pub at_root: u8,
    /// Explicit padding, reserved; zero.
    pub reserved: u16,
    /// Inode number.
    pub ino: u64,
    /// Name of the file's dentry: the last component of its path, `memfd:NAME` for a
    /// memfd, `[eventfd]` and the like for anonymous inodes, empty for pipes and sockets.
    pub name: [u8; FD_NAME_MAX],
    /// Names of the directories above it, parent first, each NUL-terminated (cut at
    /// `FD_DIR_MAX - 1` bytes).
    pub dirs: [[u8; FD_DIR_MAX]; FD_DIRS],
}

/// The control data of one message (`SCM_RIGHTS`, `SCM_CREDENTIALS`, ...), sent before the
/// message's first [`SendRecord`] by the same thread on the same socket. The raw control
/// messages are kept as the sender wrote them; the descriptors of the first `SCM_RIGHTS`
/// control message are resolved by the kernel program while they are still open.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AncillaryRecord {
    /// [`KIND_ANCILLARY`].
    pub kind: u16,
    /// `size_of::<AncillaryRecord>()`.
    pub header_len: u16,
    /// Reserved; zero.
    pub flags: u32,
    /// Sender's process and thread id.
    pub pid: u32,
    pub tid: u32,
    /// Kernel identity of the sending socket, as in [`SendRecord::sock_id`].
    pub sock_id: u64,
    /// `msg_controllen`: bytes of control data the message had.
    pub control_len: u32,
    /// Bytes of it in `control`.
    pub cap_len: u32,
    /// Entries used in `fds`.
    pub nfds: u32,
    /// Explicit padding, reserved; zero.
    pub reserved: u32,
    pub fds: [FdInfo; FDS_MAX],
    /// The control messages (`struct cmsghdr` and data, 8-byte aligned: the LP64 ABI of x86_64
    /// and arm64).
    pub control: [u8; CONTROL_MAX],
}

/// Size of [`AncillaryRecord`] on the wire.
pub const ANCILLARY_RECORD_LEN: usize = core::mem::size_of::<AncillaryRecord>();

const _: () = assert!(core::mem::size_of::<FdInfo>() == 200);
const _: () = assert!(ANCILLARY_RECORD_LEN == 40 + 200 * FDS_MAX + CONTROL_MAX);

/// Record kind of a [`CgroupRecord`].
pub const KIND_CGROUP: u16 = 3;

/// Bytes of a cgroup's path a [`CgroupRecord`] carries (the kernel's own trace buffer for it
/// holds 256, `TRACE_CGROUP_PATH_LEN`).
pub const CGROUP_PATH_MAX: usize = 256;

/// A cgroup (v2) created during the capture: its id and path, so that a container whose
/// processes sent a message and exited, its cgroup removed before userspace could look, is
/// still named.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CgroupRecord {
    /// [`KIND_CGROUP`].
    pub kind: u16,
    /// `size_of::<CgroupRecord>()`.
    pub header_len: u16,
    /// Reserved; zero.
    pub flags: u32,
    /// The cgroup's id (its directory's inode number), as `SendRecord::cgroup_id` gives it.
    pub id: u64,
    /// Bytes of `path` in use, its terminating NUL not counted.
    pub path_len: u32,
    /// Explicit padding, reserved; zero.
    pub reserved: u32,
    /// Its path from the root of the hierarchy (`/system.slice/docker-ID.scope`).
    pub path: [u8; CGROUP_PATH_MAX],
}

/// Size of [`CgroupRecord`] on the wire.
pub const CGROUP_RECORD_LEN: usize = core::mem::size_of::<CgroupRecord>();

const _: () = assert!(CGROUP_RECORD_LEN == 24 + CGROUP_PATH_MAX);
