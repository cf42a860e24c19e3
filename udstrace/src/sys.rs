//! The C library calls udstrace makes, each behind a safe function with its SAFETY argument:
//! clocks, local time and strftime, the user database, memory limits, mounting tracefs, the netlink
//! socket sock_diag answers on, entering another network namespace, opening the output file
//! relative to its directory, signal dispositions, the capture loop's timer, and becoming another
//! user without capabilities (`-Z`).

use std::{
    ffi::{CStr, CString},
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
};

/// Nanoseconds on `clock` (`CLOCK_REALTIME`, `CLOCK_BOOTTIME`).
pub(crate) fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist on every supported
    // kernel, and on failure `ts` keeps its zeroes.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// The local broken-down time of `secs` since the epoch.
fn local_tm(secs: i64) -> libc::tm {
    let secs = libc::time_t::from(secs);
    // SAFETY: `libc::tm` is plain data (integers and a pointer), for which all zeroes is a
    // valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r writes only into `tm` and
    // leaves it zeroed if it fails.
    unsafe { libc::localtime_r(&raw const secs, &raw mut tm) };
    tm
}

/// Local time of day of `secs` since the epoch: (hours, minutes, seconds).
pub(crate) fn local_time_of_day(secs: i64) -> (i32, i32, i32) {
    let tm = local_tm(secs);
    (tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `format` expanded by strftime(3) with the local time of `secs` since the epoch; `None`
/// when the result is empty or longer than `max` bytes.
pub(crate) fn strftime_local(format: &CStr, secs: i64, max: usize) -> Option<Vec<u8>> {
    let tm = local_tm(secs);
    let mut buf = vec![0u8; max + 1];
    // SAFETY: `buf` is writable for `buf.len()` bytes, which strftime is told and never
    // exceeds (it writes the terminating NUL within them, or returns 0); `format` is
    // NUL-terminated and `tm` a valid broken-down time, both borrowed for the call.
    let n = unsafe {
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            format.as_ptr(),
            &raw const tm,
        )
    };
    (n != 0).then(|| {
        buf.truncate(n);
        buf
    })
}

/// The uid of user `name`, from the user database.
pub(crate) fn user_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is NUL-terminated and outlives the call; the result is read at once,
    // before any other call could reuse getpwnam's static record.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    // SAFETY: a non-null result points at a valid passwd record.
    (!pw.is_null()).then(|| unsafe { (*pw).pw_uid })
}

/// The name of user `uid`, from the user database.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid takes an integer; the result is read at once, before any other call
    // could reuse its static record.
    let pw = unsafe { libc::getpwuid(uid) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: a non-null result points at a valid passwd record whose `pw_name` is a
    // NUL-terminated string (copied out here, before anything can overwrite it).
    let name = unsafe { CStr::from_ptr((*pw).pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The effective user id: whose files this process may write into.
#[must_use]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// `openat(2)` of `name` in the directory `dir` (an `O_PATH` descriptor will do) with
/// `flags` (`O_CLOEXEC` is added) and, for a file it creates, `mode`.
pub(crate) fn openat(
    dir: &impl AsFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string and the directory's descriptor is open, both
    // borrowed for the call; openat reads nothing else of ours (`mode` is passed by value, as
    // the variadic argument the kernel reads only with O_CREAT).
    let fd = unsafe {
        libc::openat(
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `signal` is ignored (`SIG_IGN`), as `nohup` leaves SIGHUP for the programs it runs.
#[must_use]
pub(crate) fn signal_ignored(signal: libc::c_int) -> bool {
    // SAFETY: `sigaction` is a C struct of a handler address, a signal set, flags and a
    // restorer address, for all of which all-zero bytes is a valid value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with a null new action sigaction only writes the current one into `old`, a
    // valid, writable sigaction borrowed for the call; an invalid signal number fails with
    // EINVAL and leaves `old` zeroed (SIG_DFL).
    unsafe { libc::sigaction(signal, std::ptr::null(), &raw mut old) };
    old.sa_sigaction == libc::SIG_IGN
}

/// Fixes the size from which malloc gives an allocation its own mapping (unmapped when freed)
/// at 256 KiB. glibc raises it to the size of each such allocation freed; after the start's
/// (the kernel's parsed BTF, aya's types for the program loads) the capture's buffers of up to
/// megabytes came from the heaps, whose freed pages stay resident: 3-6 MB more for the whole
/// capture, measured idle and in the soak (the output buffers are reused, so their mappings
/// are not made per write: udstrace's CPU over 2 s of 4 KiB and 64 KiB bulk was the same).
pub(crate) fn pin_mmap_threshold() {
    // SAFETY: mallopt has no preconditions; a value it refuses leaves the default.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) };
}

/// Hands freed heap memory back to the system.
pub(crate) fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

/// Sets the nice value of thread `tid` (None: the calling thread), its system calls included;
/// returns the thread's id. A failure (raising it needs `CAP_SYS_NICE`) leaves the priority as
/// it was.
pub(crate) fn set_thread_nice(tid: Option<i32>, nice: i32) -> i32 {
    // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and a thread id
    // changes that thread only (Linux).
    unsafe {
        let tid = tid.unwrap_or_else(|| libc::gettid());
        libc::setpriority(libc::PRIO_PROCESS, tid.cast_unsigned(), nice);
        tid
    }
}

/// Lifts the locked-memory limit (BPF maps are charged to it before 5.11). A failure leaves
/// the old limit, and loading then says what it lacked.
pub(crate) fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `unlimited` is a valid rlimit that outlives the call.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) };
}

/// Mounts tracefs at `target`.
pub(crate) fn mount_tracefs(target: &str) -> io::Result<()> {
    let target =
        CString::new(target).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; tracefs
    // takes no data.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A netlink socket of `protocol` (datagrams, close-on-exec).
pub(crate) fn netlink_socket(protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A timer on the monotonic clock whose expiries make its descriptor readable (non-blocking,
/// close-on-exec): the capture loop's drain timer, one wakeup per expiry.
pub(crate) fn timer_fd() -> io::Result<OwnedFd> {
    // SAFETY: plain timerfd_create(2) with constant arguments.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the timer `fd` to expire once, `after` from now (at least 1 ns: zero would disarm it).
pub(crate) fn arm_timer(fd: &OwnedFd, after: std::time::Duration) -> io::Result<()> {
    let after = after.max(std::time::Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(after.subsec_nanos().cast_signed()),
        },
    };
    // SAFETY: `fd` is open for the whole call (borrowed from its owner), `spec` is a valid
    // itimerspec that outlives the call, and a null old value is allowed.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &raw const spec, std::ptr::null_mut()) }
        < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many times the timer `fd` expired since the last call (0 if it has not: it is
/// non-blocking); reading clears its readiness.
pub(crate) fn timer_expiries(fd: &OwnedFd) -> u64 {
    let mut count = [0u8; 8];
    // SAFETY: `count` is valid for writes of its 8 bytes for the whole call, the size a
    // timerfd read takes.
    let n = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    if n == 8 {
        u64::from_ne_bytes(count)
    } else {
        0
    }
}

/// Sends one datagram on `fd`.
pub(crate) fn send(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: `bytes` is valid for reads of its length for the whole call.
    if unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram on `fd` into `buf`; returns its length.
pub(crate) fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length for the whole call.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Moves the calling thread into the network namespace `ns` (an open `/proc/PID/ns/net`, or
/// a file such a namespace is bound to): the sockets it opens from then on belong to that
/// namespace. Only for a thread made for this, which ends when done: the rest of udstrace
/// stays where it started. Needs CAP_SYS_ADMIN.
pub(crate) fn enter_net_namespace(ns: &impl AsFd) -> io::Result<()> {
    // SAFETY: the descriptor is open for the whole call (borrowed from its owner); setns with
    // CLONE_NEWNET only changes which network namespace the calling thread's new sockets
    // belong to, nothing this process's memory depends on, and a descriptor of anything
    // but a network namespace is refused with EINVAL.
    if unsafe { libc::setns(ns.as_fd().as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A user to run as (`-Z`), from the user database: the name (for its supplementary
/// groups), the uid and the primary gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: CString,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// User `name` (or a number the user database knows) from the user database.
pub(crate) fn user(name: &str) -> Option<User> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is NUL-terminated and outlives the call; the record is read at once, before
    // any other call could reuse getpwnam's static record.
    let mut pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        if let Ok(uid) = name.parse::<u32>() {
            // SAFETY: getpwuid takes an integer; the result is read at once, as above.
            pw = unsafe { libc::getpwuid(uid) };
        }
    }
    if pw.is_null() {
        return None;
    }
    // SAFETY: a non-null result points at a valid passwd record whose `pw_name` is a
    // NUL-terminated string, copied out here before anything can overwrite it.
    let (name, uid, gid) = unsafe { (CStr::from_ptr((*pw).pw_name), (*pw).pw_uid, (*pw).pw_gid) };
    Some(User {
        name: name.to_owned(),
        uid,
        gid,
    })
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets, as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit half of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's (effective, permitted) capability sets.
pub(crate) fn capabilities() -> io::Result<(u64, u64)> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget reads the header and, for version 3, writes two CapData records into
    // `data`, both valid and borrowed for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | u64::from(f(&data[1])) << 32;
    Ok((join(|d| d.effective), join(|d| d.permitted)))
}

/// `prctl(2)` with an option and up to two arguments (the rest zero).
fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the options used here take integers only and touch no memory of ours.
    if unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Becomes `user` for good (`-Z`): its supplementary groups, gid and uid (real, effective
/// and saved), no capability left in any set, and no way back through a set-user-ID program
/// (no_new_privs). Descriptors already open (the ring buffer, the attached programs) stay
/// usable. The uid and gid change in every thread (the C library passes them on); the
/// capability sets and no_new_privs are the calling thread's and those it starts afterwards.
pub(crate) fn become_user(user: &User) -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)?;
    // Ambient capabilities exist since 4.3; EINVAL before (nothing to clear).
    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    ) {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
        _ => {}
    }
    // The bounding set needs CAP_SETPCAP to shrink; without it, no_new_privs already keeps
    // any program run from gaining what the set allows.
    for cap in 0..64 {
        if let Err(e) = prctl(libc::PR_CAPBSET_DROP, cap, 0) {
            if e.raw_os_error() == Some(libc::EINVAL) {
                break; // past the kernel's last capability
            }
        }
    }
    // SAFETY: `user.name` is NUL-terminated and outlives the call; initgroups reads the group
    // database and sets this process's supplementary groups.
    if unsafe { libc::initgroups(user.name.as_ptr(), user.gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(user.gid, user.gid, user.gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain integer arguments. Leaving uid 0 this way clears the permitted and
    // effective sets (no SECBIT_KEEP_CAPS is set).
    if unsafe { libc::setresuid(user.uid, user.uid, user.uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // A process that was not root (capabilities of its own, or ambient ones) keeps its sets
    // through setresuid: empty them.
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let empty = [CapData::default(); 2];
    // SAFETY: capset reads the header and two CapData records, valid and borrowed for the
    // call; empty sets are always allowed.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, empty.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (effective, permitted) = capabilities()?;
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: the three pointers are valid, writable u32s borrowed for the call.
    unsafe { libc::getresuid(&raw mut r, &raw mut e, &raw mut s) };
    if (r, e, s) != (user.uid, user.uid, user.uid) || effective != 0 || permitted != 0 {
        return Err(io::Error::other(
            "the kernel kept privileges after the switch",
        ));
    }
    Ok(())
}

/// SIGINT and SIGTERM, blocked in this thread and the threads it starts after, so that
/// [`stop_signal`] can wait for them without a handler.
#[must_use]
pub(crate) fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use;
    // pthread_sigmask changes only this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
        set
    }
}

/// Whether one of the signals of `set` (blocked: [`block_stop_signals`]) arrived, waiting for
/// one at most `timeout`.
#[must_use]
pub(crate) fn stop_signal(set: &libc::sigset_t, timeout: std::time::Duration) -> bool {
    let wait = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos().cast_signed()),
    };
    // SAFETY: both pointers are to live values; a null siginfo is allowed.
    unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &raw const wait) > 0 }
}

/// Waits at most `timeout` for `fd` to be readable.
pub(crate) fn wait_readable(fd: &impl AsFd, timeout: std::time::Duration) {
    let mut poll = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one pollfd, valid for the call.
    unsafe { libc::poll(&raw mut poll, 1, ms) };
}
