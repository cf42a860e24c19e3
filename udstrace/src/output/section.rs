//! What a udstrace capture file says about itself: the section and interface text that tells
//! a Wireshark user the headers are synthesised and where the metadata is.

use super::{headers::MAX_HEADER_LEN, pcapng::CaptureInfo};

/// The section and interface of a capture by `backend`, keeping `snaplen` bytes a message.
#[must_use]
pub(crate) fn capture_info(snaplen: u32, backend: &str) -> CaptureInfo {
    CaptureInfo {
        section_comment: "udstrace capture of Unix domain socket traffic. The IPv6, TCP and UDP headers are \
                          synthesised, not captured: addresses are fd75:6473::<socket id>, TCP for stream \
                          sockets (sequence number = the socket's byte offset), UDP for dgram and seqpacket \
                          sockets. Who sent each packet is in its comment."
            .into(),
        hardware: std::env::consts::ARCH.into(),
        os: os_release(),
        application: format!("udstrace {}", env!("CARGO_PKG_VERSION")),
        if_name: "udstrace".into(),
        if_description: format!(
            "Unix domain sockets (AF_UNIX), captured by eBPF ({backend} backend); IPv6/TCP/UDP headers synthesised"
        ),
        snaplen: snaplen.min(udstrace_common::record::SEGMENT_MAX) + MAX_HEADER_LEN as u32,
    }
}

/// `Linux <release>`, as `uname -sr` says it.
fn os_release() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("Linux {release}")
}
