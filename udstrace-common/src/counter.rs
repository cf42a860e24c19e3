//! Indices of the kernel programs' global counters (the `COUNTERS` array map), which
//! userspace reads.

/// Segments the programs could not deliver (ring buffer full, slot busy).
pub const LOST_SEGMENTS: u32 = 0;
/// Payload bytes of those segments.
pub const LOST_BYTES: u32 = 1;
/// Largest number of bytes waiting in the ring buffer seen since userspace last reset it.
pub const RING_PEAK: u32 = 2;
/// Calls whose entry was seen and whose return was not (a kretprobe has a fixed number of
/// instances for calls in flight; calls blocked in recvmsg or sendmsg use them up): their
/// messages are lost, their size unknown.
pub const MISSED_RETURNS: u32 = 3;
/// Number of counters.
pub const COUNT: u32 = 4;
