//! Bits of the kernel programs' `FILTERS` global: which filters userspace turned on.

/// Only processes in `PID_FILTER`.
pub const PIDS: u32 = 1;
/// Only command names in `COMM_FILTER`.
pub const COMMS: u32 = 2;
/// Only users in `UID_FILTER`.
pub const UIDS: u32 = 4;
/// Children of processes in `PID_FILTER` are added to it when they are forked.
pub const FOLLOW: u32 = 8;
