//! Array maps read and written through shared memory (`BPF_F_MMAPABLE`, 5.5+) rather than the
//! bpf(2) system call: no system call per access, and still allowed once `-Z` has dropped
//! every privilege (before 6.5, with `kernel.unprivileged_bpf_disabled` set as Debian sets it,
//! the kernel refuses every bpf(2) command to a task without CAP_BPF, even on a map it holds,
//! so the loss counters could not have been read at the end of such a capture). The ring
//! buffer is mapped the same way (`ring.rs`), with the two functions at the end of this file.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{Map, MapData};

use crate::error::Error;

/// An array map of `u64` values mapped into this process. The kernel lays the values out
/// one after the other from the start of the mapping (8 bytes each: `u64` needs no padding).
pub(crate) struct MappedArray {
    base: NonNull<AtomicU64>,
    len: u32,
    bytes: usize,
    /// The map, kept open for as long as it is mapped.
    _map: MapData,
}

impl MappedArray {
    /// Maps `map`, an array map of `len` `u64` values created with `BPF_F_MMAPABLE`, named
    /// `name` for errors.
    pub(crate) fn new(map: Option<Map>, name: &'static str, len: u32) -> Result<Self, Error> {
        let Some(Map::Array(map)) = map else {
            return Err(Error::MissingMap(name));
        };
        let page = page_size();
        let bytes = (len as usize * 8).div_ceil(page) * page;
        // The kernel sized the map to at least `len` values rounded up to whole pages.
        let base = map_shared(
            map.fd().as_fd().as_raw_fd(),
            bytes,
            0,
            libc::PROT_READ | libc::PROT_WRITE,
        )
        .map_err(|e| Error::Load(format!("{name}: cannot map it into memory: {e}")))?
        .cast::<AtomicU64>();
        Ok(Self {
            base,
            len,
            bytes,
            _map: map,
        })
    }

    /// Value `index` (0 past the end).
    pub(crate) fn get(&self, index: u32) -> u64 {
        self.slot(index).map_or(0, |v| v.load(Ordering::Relaxed))
    }

    /// Sets value `index` (nothing past the end).
    pub(crate) fn set(&self, index: u32, value: u64) {
        if let Some(v) = self.slot(index) {
            v.store(value, Ordering::Relaxed);
        }
    }

    fn slot(&self, index: u32) -> Option<&AtomicU64> {
        // SAFETY: inside the mapping, which lives as long as `self`; the kernel programs
        // update the values atomically.
        (index < self.len).then(|| unsafe { &*self.base.as_ptr().add(index as usize) })
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer referenced.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

/// The size of a page of memory.
pub(super) fn page_size() -> usize {
    // SAFETY: a plain call; no page size is a failure only on a broken system.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// A new shared mapping of `len` bytes of map `fd` from byte `offset`.
pub(super) fn map_shared(
    fd: RawFd,
    len: usize,
    offset: usize,
    prot: libc::c_int,
) -> io::Result<NonNull<libc::c_void>> {
    let offset = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: a new mapping; nothing else is at the address it returns.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd,
            offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr).ok_or_else(io::Error::last_os_error)
}
