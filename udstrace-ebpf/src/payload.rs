//! Where a message's bytes are: the segment kinds (`SEG_*`) and the `Payload` hooks hand on.

/// Kinds of segment arrays: a user `struct iovec` array in user memory (system call
/// arguments); a `struct iovec` array the kernel copied (`ITER_IOVEC`: user buffers); a
/// `struct kvec` array (`ITER_KVEC`: kernel buffers); a `struct bio_vec` array (`ITER_BVEC`:
/// pages, from `sendfile`/`splice`).
pub(crate) const SEG_USER_IOVEC: u32 = 0;
pub(crate) const SEG_IOVEC: u32 = 1;
pub(crate) const SEG_KVEC: u32 = 2;
pub(crate) const SEG_BVEC: u32 = 3;
/// For `SendEntry::kind`: one user buffer, one kernel buffer, or nothing readable.
pub(crate) const SEG_UBUF: u32 = 4;
pub(crate) const SEG_KBUF: u32 = 5;
pub(crate) const SEG_NONE: u32 = 6;

/// Where the accepted bytes are. `kind` is a `SEG_*` kind: for one buffer (`SEG_UBUF` in user
/// memory: `write`, `sendto`, `ITER_UBUF`; `SEG_KBUF` in kernel memory: a page for
/// `sendpage`) `ptr` and `len` are the buffer; for a segment array `ptr` is the array, `len`
/// its number of entries and `skip` the bytes consumed before this message; `SEG_NONE`: not in
/// memory the programs can read, or nowhere they can tell.
///
/// A struct whose every field is always set, not an enum: LLVM copies an enum's fields on
/// paths whose variant leaves them undefined, and the verifier refuses a program that reads an
/// unset register (`R3 !read_ok`).
#[derive(Clone, Copy)]
pub(crate) struct Payload {
    pub(crate) kind: u32,
    pub(crate) ptr: u64,
    pub(crate) len: u64,
    pub(crate) skip: u64,
}

impl Payload {
    pub(crate) const MISSING: Self = Self {
        kind: SEG_NONE,
        ptr: 0,
        len: 0,
        skip: 0,
    };

    /// One buffer, in user or kernel memory.
    #[inline(always)]
    pub(crate) fn buf(ptr: u64, len: u64, kernel: bool) -> Self {
        Self {
            kind: if kernel { SEG_KBUF } else { SEG_UBUF },
            ptr,
            len,
            skip: 0,
        }
    }

    /// An array of `count` segments of kind `kind`, the first `skip` bytes of which were
    /// consumed before this message.
    #[inline(always)]
    pub(crate) fn segments(array: u64, count: u64, skip: u64, kind: u32) -> Self {
        Self {
            kind,
            ptr: array,
            len: count,
            skip,
        }
    }
}
