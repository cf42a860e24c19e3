//! (Test code: libc return values and lengths are cast freely; a wrong cast fails the test.)
#![allow(
    clippy::cast_sign_loss,
    clippy::similar_names,
    clippy::items_after_statements
)]

//! Capture fidelity: real programs loaded, real sockets driven in this process with known
//! bytes, and every byte checked in the capture file, with our parser and with tshark.

use std::os::linux::net::SocketAddrExt;
use std::{
    io::{Read, Write},
    os::unix::{
        io::{AsFd, AsRawFd, RawFd},
        net::{UnixDatagram, UnixListener, UnixStream},
    },
    thread,
    time::Duration,
};

use udstrace_tests::{
    datagrams, inode, io_uring, own_pid, pattern, read_capture, run, sys, tcp_stream,
    tshark_follow, tshark_payloads, TempDir, Udstrace,
};

/// The value of a system call that must succeed.
fn check<T>(result: std::io::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("syscall failed: {e}"))
}

/// sendmmsg of `messages` that must send them all.
fn sendmmsg(fd: impl AsFd, messages: &[&[&[u8]]]) -> usize {
    let n = sys::sendmmsg(fd, messages, 0);
    assert_eq!(n.as_ref().ok(), Some(&messages.len()), "sendmmsg: {n:?}");
    messages.len()
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
