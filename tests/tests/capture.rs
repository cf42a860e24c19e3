//! (Test code: libc return values and lengths are cast freely; a wrong cast fails the test.)
#![allow(
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_possible_truncation,
    clippy::similar_names,
    clippy::items_after_statements,
    clippy::borrow_as_ptr,
    clippy::too_many_lines
)]

//! Capture fidelity: real programs loaded, real sockets driven in this process with known
//! bytes, and every byte checked in the capture file, with our parser and with tshark.

use std::os::linux::net::SocketAddrExt;
use std::{
    io::{Read, Write},
    os::unix::{
        io::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        net::{UnixDatagram, UnixListener, UnixStream},
    },
    thread,
    time::Duration,
};

use udstrace_tests::{
    datagrams, inode, io_uring, own_pid, pattern, read_capture, run, tcp_stream, tshark_follow,
    tshark_payloads, TempDir, Udstrace,
};

fn check(rc: isize) -> usize {
    assert!(
        rc >= 0,
        "syscall failed: {}",
        std::io::Error::last_os_error()
    );
    rc as usize
}

fn iovecs(parts: &[&[u8]]) -> Vec<libc::iovec> {
    parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut _,
            iov_len: p.len(),
        })
        .collect()
}

fn writev(fd: RawFd, parts: &[&[u8]]) -> usize {
    let iov = iovecs(parts);
    check(unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as i32) })
}

fn sendmsg(fd: RawFd, parts: &[&[u8]]) -> usize {
    let mut iov = iovecs(parts);
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    check(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) })
}

fn sendmmsg(fd: RawFd, messages: &[&[&[u8]]]) -> usize {
    let mut iovs: Vec<Vec<libc::iovec>> = messages.iter().map(|m| iovecs(m)).collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov.as_mut_ptr();
            h.msg_hdr.msg_iovlen = iov.len();
            h
        })
        .collect();
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
    assert_eq!(
        n as usize,
        messages.len(),
        "sendmmsg: {}",
        std::io::Error::last_os_error()
    );
    n as usize
}

fn socketpair(kind: i32) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(
        unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) },
        0
    );
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn set_nonblocking(fd: RawFd) {
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) },
        0
    );
}

/// Reads everything from `s` until EOF, in a thread.
fn drain(mut s: UnixStream) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v
    })
}

fn start_capture(dir: &TempDir, extra: &[&str]) -> (Udstrace, std::path::PathBuf) {
    let file = dir.path("capture.pcapng");
    let pid = own_pid();
    let mut args = vec!["-p", &pid, "-w", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Udstrace::start(&args), file)
}

#[path = "capture/dgram.rs"]
mod dgram;
#[path = "capture/endpoints.rs"]
mod endpoints;
#[path = "capture/indirect.rs"]
mod indirect;
#[path = "capture/output.rs"]
mod output;
#[path = "capture/receives.rs"]
mod receives;
#[path = "capture/stream.rs"]
mod stream;
