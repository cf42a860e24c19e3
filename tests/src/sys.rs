//! The system calls the tests make to drive sockets the way real programs do, as safe
//! functions: one function per call, taking descriptors as [`AsFd`] and buffers as slices,
//! and returning what the call returned, `-1` as the `errno` it set (read right after the
//! call, before anything else can change it).
//!
//! Every pointer handed to the kernel here comes from a slice or a value borrowed for the
//! whole call, with the length of that same slice: the kernel reads or writes nothing
//! outside of it, and nothing keeps the pointer once the call returns.

use std::{
    ffi::CStr,
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
    os::unix::process::CommandExt,
    process::Command,
    ptr,
};

/// `Ok(rc)` for a non-negative count, else the `errno` the call set.
fn cvt<T>(rc: T) -> io::Result<usize>
where
    usize: TryFrom<T>,
{
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// `Ok(rc)` for a non-negative `int`, else the `errno` the call set.
fn cvt_int(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// `iovec`s over `parts`, for calls that only read them (`iov_base` is `*mut` in C's struct
/// for both directions).
fn iovecs(parts: &[&[u8]]) -> Vec<libc::iovec> {
    parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr().cast_mut().cast(),
            iov_len: p.len(),
        })
        .collect()
}

fn iov_count(iov: &[libc::iovec]) -> io::Result<libc::c_int> {
    libc::c_int::try_from(iov.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A `msghdr` with no name, iovecs or control data.
fn empty_msghdr() -> libc::msghdr {
    // SAFETY: `msghdr` is a C struct of integers and raw pointers (and, on some targets,
    // padding fields), for all of which all-zero bytes is a valid value: null pointers and
    // zero lengths, the empty message.
    unsafe { std::mem::zeroed() }
}

/// `write(2)` of `buf`.
pub fn write(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, borrowed for the call.
    cvt(unsafe { libc::write(raw(&fd), buf.as_ptr().cast(), buf.len()) })
}

/// `read(2)` into `buf`.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, borrowed mutably for
    // the call.
    cvt(unsafe { libc::read(raw(&fd), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `send(2)` of `buf` with `flags`.
pub fn send(fd: impl AsFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, borrowed for the call.
    cvt(unsafe { libc::send(raw(&fd), buf.as_ptr().cast(), buf.len(), flags) })
}

/// `sendto(2)` of `buf` with `flags` and no destination address (null, length 0).
pub fn sendto(fd: impl AsFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`, borrowed for the call;
    // a null address of length 0 is read as no address.
    cvt(unsafe {
        libc::sendto(
            raw(&fd),
            buf.as_ptr().cast(),
            buf.len(),
            flags,
            ptr::null(),
            0,
        )
    })
}

/// `recv(2)` into `buf` with `flags`.
pub fn recv(fd: impl AsFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, borrowed mutably for
    // the call.
    cvt(unsafe { libc::recv(raw(&fd), buf.as_mut_ptr().cast(), buf.len(), flags) })
}

/// `recvfrom(2)` into `buf` with `flags`, not asking for the sender's address (null address
/// and length pointers).
pub fn recvfrom(fd: impl AsFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, borrowed mutably for
    // the call; with null address pointers it writes no address.
    cvt(unsafe {
        libc::recvfrom(
            raw(&fd),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    })
}

/// `writev(2)` of `parts`, one iovec each (empty ones included).
pub fn writev(fd: impl AsFd, parts: &[&[u8]]) -> io::Result<usize> {
    let iov = iovecs(parts);
    let count = iov_count(&iov)?;
    // SAFETY: `iov` holds `count` iovecs, each over one of `parts` with its length; the
    // kernel only reads them and the bytes they point at, all borrowed for the call.
    cvt(unsafe { libc::writev(raw(&fd), iov.as_ptr(), count) })
}

/// `pwritev2(2)` of `parts` at `offset` (`-1`: the current position) with `flags`.
pub fn pwritev2(
    fd: impl AsFd,
    parts: &[&[u8]],
    offset: libc::off_t,
    flags: libc::c_int,
) -> io::Result<usize> {
    let iov = iovecs(parts);
    let count = iov_count(&iov)?;
    // SAFETY: as in `writev`: `count` iovecs over borrowed `parts`, only read by the kernel.
    cvt(unsafe { libc::pwritev2(raw(&fd), iov.as_ptr(), count, offset, flags) })
}

/// `readv(2)` into `bufs`, one iovec each.
pub fn readv(fd: impl AsFd, bufs: &mut [&mut [u8]]) -> io::Result<usize> {
    let iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let count = iov_count(&iov)?;
    // SAFETY: `iov` holds `count` iovecs, each over one of `bufs` with its length, all
    // borrowed mutably for the call: the kernel writes only inside them.
    cvt(unsafe { libc::readv(raw(&fd), iov.as_ptr(), count) })
}

/// `sendmsg(2)` of `parts` (one iovec each; none, with a null `msg_iov`, when `parts` is
/// empty) and the control messages `control`, already laid out as `cmsghdr`s (none, with a
/// null `msg_control`, when empty).
pub fn sendmsg(
    fd: impl AsFd,
    parts: &[&[u8]],
    control: &[u8],
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut iov = iovecs(parts);
    let mut msg = empty_msghdr();
    if !iov.is_empty() {
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
    }
    if !control.is_empty() {
        msg.msg_control = control.as_ptr().cast_mut().cast();
        msg.msg_controllen = control.len();
    }
    // SAFETY: `msg` points at `iov` (`msg_iovlen` iovecs over the borrowed `parts`) and at
    // `control` with their lengths, or has null pointers and zero lengths; sendmsg only reads
    // the header, the iovecs, the bytes and the control data, all alive for the call.
    cvt(unsafe { libc::sendmsg(raw(&fd), &raw const msg, flags) })
}

/// `sendmmsg(2)` of `messages` with `flags`: each message's parts are its iovecs, and a
/// message with no parts has `msg_iovlen` 0. Returns how many messages were sent.
pub fn sendmmsg(fd: impl AsFd, messages: &[&[&[u8]]], flags: libc::c_int) -> io::Result<usize> {
    let mut iovs: Vec<Vec<libc::iovec>> = messages.iter().map(|m| iovecs(m)).collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| libc::mmsghdr {
            msg_hdr: libc::msghdr {
                msg_iov: iov.as_mut_ptr(),
                msg_iovlen: iov.len(),
                ..empty_msghdr()
            },
            msg_len: 0,
        })
        .collect();
    let count =
        u32::try_from(hdrs.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `hdrs` holds `count` headers, each pointing at its own vector of `iovs` with
    // that vector's length, over the borrowed `messages`; the kernel reads those and writes
    // only each header's `msg_len`, in `hdrs`, borrowed mutably for the call.
    let n = unsafe { libc::sendmmsg(raw(&fd), hdrs.as_mut_ptr(), count, flags) };
    cvt(n)
}

/// The same `sendmmsg(2)` vector sent again and again, as a program that reuses its buffers
/// does: `entries` headers of one iovec each, over buffers of `len` bytes, all at fixed
/// addresses for the life of the value. Write new contents with [`MmsgVector::buffer_mut`]
/// between sends.
pub struct MmsgVector {
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl MmsgVector {
    /// `entries` zeroed buffers of `len` bytes behind `entries` headers.
    #[must_use]
    pub fn new(entries: usize, len: usize) -> Self {
        let mut bufs: Vec<Vec<u8>> = (0..entries).map(|_| vec![0u8; len]).collect();
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let hdrs = iovs
            .iter_mut()
            .map(|iov| libc::mmsghdr {
                msg_hdr: libc::msghdr {
                    msg_iov: iov,
                    msg_iovlen: 1,
                    ..empty_msghdr()
                },
                msg_len: 0,
            })
            .collect();
        Self { bufs, iovs, hdrs }
    }

    /// The buffers, in entry order.
    #[must_use]
    pub fn buffers(&self) -> &[Vec<u8>] {
        &self.bufs
    }

    /// Entry `i`'s buffer, to write the next send's contents into (a slice: its length and
    /// address stay those the vector points at).
    pub fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i]
    }

    /// Sends every entry with one `sendmmsg(2)` with `flags`; returns how many were sent.
    pub fn send(&mut self, fd: impl AsFd, flags: libc::c_int) -> io::Result<usize> {
        // Point the vector at the buffers again, through the exclusive borrow of this call:
        // the same addresses and lengths as before, as the buffers never move or resize.
        for ((iov, buf), hdr) in self.iovs.iter_mut().zip(&mut self.bufs).zip(&mut self.hdrs) {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        let count = u32::try_from(self.hdrs.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `hdrs` holds `count` headers, each pointing at its one iovec in `iovs`,
        // which points at its buffer in `bufs` with that buffer's length, all set just above
        // and owned by `self`, borrowed mutably for the call; the kernel reads those and
        // writes only each header's `msg_len`.
        let n = unsafe { libc::sendmmsg(raw(&fd), self.hdrs.as_mut_ptr(), count, flags) };
        cvt(n)
    }
}

/// `recvmsg(2)` of one message into `buf` with `flags` and room for `control_len` bytes of
/// control data; returns the bytes received and the descriptors that came with the message
/// (`SCM_RIGHTS`), now owned: dropping them closes them.
pub fn recvmsg_rights(
    fd: impl AsFd,
    buf: &mut [u8],
    control_len: usize,
    flags: libc::c_int,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    // u64s: the alignment of a `cmsghdr`.
    let mut control = vec![0u64; control_len.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg = empty_msghdr();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len;
    // SAFETY: `msg` points at one iovec over `buf` (borrowed mutably for the call) and at
    // `control`, at least `control_len` bytes long, both with their lengths; the kernel
    // writes only inside them and into `msg`.
    let n = cvt(unsafe { libc::recvmsg(raw(&fd), &raw mut msg, flags) })?;
    let control: Vec<u8> = control.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let control = &control[..msg.msg_controllen.min(control_len)];
    let mut fds = Vec::new();
    let mut off = 0;
    // Each cmsghdr: length (usize), level and type (i32 each), data, padded to 8 bytes.
    while off + 16 <= control.len() {
        let len = usize::from_ne_bytes(control[off..off + 8].try_into().unwrap());
        let level = i32::from_ne_bytes(control[off + 8..off + 12].try_into().unwrap());
        let kind = i32::from_ne_bytes(control[off + 12..off + 16].try_into().unwrap());
        if len < 16 || off + len > control.len() {
            break;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            for c in control[off + 16..off + len].chunks_exact(4) {
                let raw_fd = RawFd::from_ne_bytes(c.try_into().unwrap());
                // SAFETY: the kernel has just installed this descriptor in this process for
                // this message (an SCM_RIGHTS entry of the control data it wrote): a new
                // descriptor that nothing else owns, taken over once, here.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw_fd) });
            }
        }
        off += len.div_ceil(8) * 8;
    }
    Ok((n, fds))
}

/// `socketpair(2)` of `AF_UNIX` sockets of type `kind`.
pub fn socketpair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: the kernel writes two descriptors into `fds`, an array of two `int`s.
    cvt_int(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded: `fds` are two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `pipe(2)`: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: the kernel writes two descriptors into `fds`, an array of two `int`s.
    cvt_int(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    // SAFETY: pipe succeeded: `fds` are two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `memfd_create(2)` named `name` with `flags`.
pub fn memfd_create(name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string, borrowed for the call.
    let fd = cvt_int(unsafe { libc::memfd_create(name.as_ptr(), flags) })?;
    // SAFETY: memfd_create succeeded: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fcntl(2)` `F_GETFL`, then `F_SETFL` with `O_NONBLOCK` added to the flags.
pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let fd = raw(&fd);
    // SAFETY: F_GETFL takes no argument and touches no memory of ours.
    let flags = cvt_int(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: F_SETFL takes an int argument and touches no memory of ours.
    cvt_int(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// `setsockopt(2)` of an `int` option.
pub fn setsockopt_int(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the kernel reads `size_of::<c_int>()` bytes from `value`, borrowed for the
    // call.
    cvt_int(unsafe {
        libc::setsockopt(
            raw(&fd),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `sendfile(2)` of up to `count` bytes of `file` from `*offset` (which it advances) to
/// `out`.
pub fn sendfile(
    out: impl AsFd,
    file: impl AsFd,
    offset: &mut libc::off_t,
    count: usize,
) -> io::Result<usize> {
    // SAFETY: the kernel reads and updates the `off_t` behind `offset`, borrowed mutably for
    // the call; the bytes move between the two descriptors, not through our memory.
    cvt(unsafe { libc::sendfile(raw(&out), raw(&file), offset, count) })
}

/// `splice(2)` of up to `len` bytes from `from` to `to`, at their current positions (null
/// offsets), with `flags`.
pub fn splice(
    from: impl AsFd,
    to: impl AsFd,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    // SAFETY: with null offsets the kernel reads and writes no memory of ours; the bytes
    // move between the two descriptors.
    cvt(unsafe {
        libc::splice(
            raw(&from),
            ptr::null_mut(),
            raw(&to),
            ptr::null_mut(),
            len,
            flags,
        )
    })
}

/// `getuid(2)`.
#[must_use]
pub fn getuid() -> libc::uid_t {
    // SAFETY: getuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::getuid() }
}

/// `getgid(2)`.
#[must_use]
pub fn getgid() -> libc::gid_t {
    // SAFETY: getgid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::getgid() }
}

/// `kill(2)` of process `pid` with `signal`.
pub fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes two integers and touches no memory of ours.
    cvt_int(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// `getrusage(2)` of this process (`RUSAGE_SELF`: all its threads).
pub fn getrusage_self() -> io::Result<libc::rusage> {
    // SAFETY: `rusage` is a C struct of integers (and `timeval`s of integers), for which
    // all-zero bytes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel fills the `rusage` behind the pointer, borrowed mutably for the
    // call.
    cvt_int(unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) })?;
    Ok(usage)
}

/// Makes `command`'s child keep the descriptors `fds` open across `exec` (`fcntl(2)`
/// `F_SETFD` 0 on each, in the child between fork and exec), and fail to spawn if one of
/// them is not open. The parent's descriptors stay as they are: only that child inherits
/// them, not the other processes this one spawns meanwhile.
pub fn keep_open_across_exec(command: &mut Command, fds: &[RawFd]) {
    let fds = fds.to_vec();
    let clear_cloexec = move || {
        for &fd in &fds {
            // SAFETY: F_SETFD takes an int argument and touches no memory of ours.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child, where only async-signal-safe work is
    // allowed: it reads a vector allocated before the fork, calls fcntl (async-signal-safe),
    // and builds an `io::Error` from an errno, which does not allocate.
    unsafe { command.pre_exec(clear_cloexec) };
}
