//! Kernel timestamps (`CLOCK_BOOTTIME` nanoseconds) to wall-clock time.

/// Converts boot-time nanoseconds to nanoseconds since the Unix epoch, using the offset
/// between the two clocks measured once at start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    offset_ns: i128,
}

fn now_ns(clock: libc::clockid_t) -> i128 {
    crate::sys::clock_ns(clock)
}

impl WallClock {
    #[must_use]
    pub(crate) fn new() -> Self {
        // Read the boot clock between two reads of the wall clock and take the midpoint.
        let a = now_ns(libc::CLOCK_REALTIME);
        let boot = now_ns(libc::CLOCK_BOOTTIME);
        let b = now_ns(libc::CLOCK_REALTIME);
        Self {
            offset_ns: i128::midpoint(a, b) - boot,
        }
    }

    /// A clock with a given offset from boot time to wall time, for reproducible output.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    #[must_use]
    pub(crate) fn wall_ns(&self, boot_ns: u64) -> u64 {
        u64::try_from(i128::from(boot_ns) + self.offset_ns).unwrap_or(0)
    }

    /// The wall clock now, in nanoseconds.
    #[must_use]
    pub(crate) fn now() -> u64 {
        u64::try_from(now_ns(libc::CLOCK_REALTIME)).unwrap_or(0)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_now_maps_to_wall_time_now() {
        let c = WallClock::new();
        let boot = u64::try_from(now_ns(libc::CLOCK_BOOTTIME)).unwrap();
        let wall = c.wall_ns(boot);
        let diff = i128::from(wall) - i128::from(WallClock::now());
        assert!(diff.abs() < 50_000_000, "off by {diff} ns");
    }
}
