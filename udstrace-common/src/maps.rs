//! Names the kernel programs and userspace both use: maps, the globals userspace fills in
//! before loading, and the slots of the copy loop's continuation array.
//!
//! aya names a map or global after its `static`, so the kernel crate declares each one with
//! exactly the name given here; a userspace unit test (`tracer::tests`) checks that the built
//! object has every one of them.

/// The ring buffer of records (`SendRecord`, `AncillaryRecord`).
pub const EVENTS: &str = "EVENTS";
/// One slot per CPU: a record being built and the copy loop's state.
pub const SCRATCH: &str = "SCRATCH";
/// Per thread: the message a send or receive call is handling, noted at its entry.
pub const SEND_ENTRIES: &str = "SEND_ENTRIES";
/// Per socket: bytes sent and received so far (the TCP sequence numbers), the process last
/// seen sending on it or reading from it (the receiver of what its peer sends), and its peer
/// credentials' process.
pub const SOCKETS: &str = "SOCKETS";
/// The same, in each socket's own storage: for the programs that hold the socket as a typed
/// pointer.
pub const SOCK_STORAGE: &str = "SOCK_STORAGE";
/// Per thread: where a `sendmmsg` vector goes on.
pub const MMSG_NEXT: &str = "MMSG_NEXT";
/// Global counters, indexed by [`crate::counter`].
pub const COUNTERS: &str = "COUNTERS";
/// `-p`: wanted processes.
pub const PID_FILTER: &str = "PID_FILTER";
/// `--comm`: wanted command names.
pub const COMM_FILTER: &str = "COMM_FILTER";
/// `--uid`: wanted users.
pub const UID_FILTER: &str = "UID_FILTER";
/// `--container`, `--pod`: the cgroup (v2) ids of the wanted containers and their
/// descendants.
pub const CGROUP_FILTER: &str = "CGROUP_FILTER";
/// `--path`: the identities (`filter::PathKey`) of the wanted socket files.
pub const PATH_FILTER: &str = "PATH_FILTER";
/// `--path`: the wanted bound names (`filter::PathName`), as typed.
pub const PATH_NAME_FILTER: &str = "PATH_NAME_FILTER";
/// The copy loop's continuation programs (kernels without `bpf_loop`), indexed by
/// [`CONTINUE_FEXIT`] and [`CONTINUE_KRETPROBE`].
pub const COPY_CONTINUE: &str = "COPY_CONTINUE";
/// One flag userspace sets when it goes idle: the next record sent wakes it at once (and
/// clears the flag); otherwise records wait for its drain timer.
pub const WAKE_REQUEST: &str = "WAKE_REQUEST";

/// `DirectMap`: where the kernel's direct map and page array are. A map, not a global:
/// userspace writes it after the object is loaded, before any program is attached, so that
/// `/proc/kallsyms` (where x86_64's bases are found) is read while the object loads.
pub const DIRECT_MAP: &str = "DIRECT_MAP";

/// Every map, for the check that the object has them.
pub const ALL_MAPS: [&str; 16] = [
    EVENTS,
    SCRATCH,
    SEND_ENTRIES,
    SOCKETS,
    SOCK_STORAGE,
    MMSG_NEXT,
    COUNTERS,
    PID_FILTER,
    COMM_FILTER,
    UID_FILTER,
    CGROUP_FILTER,
    PATH_FILTER,
    PATH_NAME_FILTER,
    COPY_CONTINUE,
    WAKE_REQUEST,
    DIRECT_MAP,
];

/// Slot of the fexit backend's continuation program in [`COPY_CONTINUE`].
pub const CONTINUE_FEXIT: u32 = 0;
/// Slot of the kretprobe backend's continuation program in [`COPY_CONTINUE`].
pub const CONTINUE_KRETPROBE: u32 = 1;
/// Slots of [`COPY_CONTINUE`].
pub const CONTINUE_SLOTS: u32 = 2;

/// Globals (read-only data) userspace sets before loading.
pub mod global {
    /// `KernelLayout`: field offsets read from the running kernel's BTF.
    pub const LAYOUT: &str = "LAYOUT";
    /// `SyscallAbi`: the running architecture's system call numbers and registers.
    pub const SYSCALL_ABI: &str = "SYSCALL_ABI";
    /// udstrace's own process, never captured.
    pub const SELF_TGID: &str = "SELF_TGID";
    /// `-s`: bytes kept of each message.
    pub const SNAPLEN: &str = "SNAPLEN";
    /// Bytes waiting in the ring buffer before userspace is woken.
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// Non-zero when `bpf_task_pt_regs` exists (5.15+).
    pub const USE_TASK_PT_REGS: &str = "USE_TASK_PT_REGS";
    /// Bits of [`crate::filter`]: the filters turned on.
    pub const FILTERS: &str = "FILTERS";
    /// `--type`: bit `1 << type` for each wanted socket type.
    pub const TYPE_MASK: &str = "TYPE_MASK";
    /// `-p` without `--follow`, up to `filter::PID_LIST_MAX` processes: their pids (the
    /// first repeated in the unused entries).
    pub const PID_LIST: &str = "PID_LIST";

    /// Every global, for the check that the object has them.
    pub const ALL: [&str; 9] = [
        LAYOUT,
        SYSCALL_ABI,
        SELF_TGID,
        SNAPLEN,
        WAKEUP_BYTES,
        USE_TASK_PT_REGS,
        FILTERS,
        TYPE_MASK,
        PID_LIST,
    ];
}
