//! Adds to the global counters userspace reads (`COUNTERS`, indexed by `udstrace_common::counter`).

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use crate::maps::COUNTERS;

/// Adds `n` to counter `index`.
#[inline(always)]
pub(crate) fn count(index: u32, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a map value, shared between CPUs: updated atomically.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, n) };
    }
}
