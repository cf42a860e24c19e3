//! kprobe/kretprobe backend: the fentry backend's functions, for kernels without trampolines.
//!
//! The same functions as `unix_sendmsg_fentry.rs`, for kernels with kprobes but no BPF
//! trampolines. A kretprobe sees only the return value; the entry noted the rest.
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros call each program with its context by value"
)]

use aya_ebpf::{
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use udstrace_common::maps::CONTINUE_KRETPROBE;

use crate::{copy, kernel::Probe, sendmsg};

/// Entry of any of the three sendmsg functions (same prototype; attached to each).
///
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
#[kprobe]
fn kprobe_unix_sendmsg(ctx: ProbeContext) -> u32 {
    if let (Some(sock), Some(msg)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        sendmsg::enter_sendmsg(sock, msg);
    }
    0
}

/// Entry of any of the three recvmsg functions (`--recv`); their return is
/// `kretprobe_unix_sendmsg` too.
///
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
#[kprobe]
fn kprobe_unix_recvmsg(ctx: ProbeContext) -> u32 {
    if let (Some(sock), Some(msg), Some(flags)) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<i32>(3))
    {
        sendmsg::enter_recvmsg(sock, msg, flags);
    }
    0
}

/// Return of any of the three sendmsg (and recvmsg) functions (int): copying under
/// `bpf_loop`, and (`_seq`) for kernels without it.
///
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
#[kretprobe]
fn kretprobe_unix_sendmsg(ctx: RetProbeContext) -> u32 {
    sendmsg::exit::<true, Probe, _>(&ctx, CONTINUE_KRETPROBE, i64::from(ctx.ret::<i32>()), 0);
    0
}

/// `kretprobe_unix_sendmsg` for kernels without `bpf_loop`.
///
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
#[kretprobe]
fn kretprobe_unix_sendmsg_seq(ctx: RetProbeContext) -> u32 {
    sendmsg::exit::<false, Probe, _>(&ctx, CONTINUE_KRETPROBE, i64::from(ctx.ret::<i32>()), 0);
    0
}

/// Entry of `unix_stream_sendpage` (until 6.4: sendfile and splice to a stream socket).
///
/// match-proto: v6.4 net/unix/af_unix.c: static ssize_t unix_stream_sendpage(struct socket *socket, struct page *page, int offset, size_t size, int flags)
#[kprobe]
fn kprobe_unix_stream_sendpage(ctx: ProbeContext) -> u32 {
    if let (Some(sock), Some(page), Some(offset), Some(size)) = (
        ctx.arg::<u64>(0),
        ctx.arg::<u64>(1),
        ctx.arg::<i32>(2),
        ctx.arg::<u64>(3),
    ) {
        sendmsg::enter_sendpage(sock, page, offset, size);
    }
    0
}

/// Return of `unix_stream_sendpage` (ssize_t).
///
/// match-proto: v6.4 net/unix/af_unix.c: static ssize_t unix_stream_sendpage(struct socket *socket, struct page *page, int offset, size_t size, int flags)
#[kretprobe]
fn kretprobe_unix_stream_sendpage(ctx: RetProbeContext) -> u32 {
    sendmsg::exit::<true, Probe, _>(&ctx, CONTINUE_KRETPROBE, ctx.ret::<i64>(), 0);
    0
}

/// `kretprobe_unix_stream_sendpage` for kernels without `bpf_loop`.
///
/// match-proto: v6.4 net/unix/af_unix.c: static ssize_t unix_stream_sendpage(struct socket *socket, struct page *page, int offset, size_t size, int flags)
#[kretprobe]
fn kretprobe_unix_stream_sendpage_seq(ctx: RetProbeContext) -> u32 {
    sendmsg::exit::<false, Probe, _>(&ctx, CONTINUE_KRETPROBE, ctx.ret::<i64>(), 0);
    0
}

/// `kretprobe_unix_sendmsg_seq` with no tail call, for kernels without `bpf_loop` that refuse
/// a program with both a tail call and a call to a function of its own (every program calls
/// `memset`): before 6.0 only the x86_64 JIT took both (arm64's 5.10). It copies what its
/// bounded steps can (256: 256 iovecs or 16 MiB in one buffer) and cuts the rest (`iov-limit`).
///
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
#[kretprobe]
fn kretprobe_unix_sendmsg_flat(ctx: RetProbeContext) -> u32 {
    sendmsg::exit::<false, Probe, _>(&ctx, copy::NO_CONTINUATION, i64::from(ctx.ret::<i32>()), 0);
    0
}

/// `kretprobe_unix_stream_sendpage_seq` with no tail call (see `kretprobe_unix_sendmsg_flat`).
///
/// match-proto: v6.4 net/unix/af_unix.c: static ssize_t unix_stream_sendpage(struct socket *socket, struct page *page, int offset, size_t size, int flags)
#[kretprobe]
fn kretprobe_unix_stream_sendpage_flat(ctx: RetProbeContext) -> u32 {
    sendmsg::exit::<false, Probe, _>(&ctx, copy::NO_CONTINUATION, ctx.ret::<i64>(), 0);
    0
}

/// The copy loop's continuation on kernels without `bpf_loop`: never attached, only
/// tail-called from the return probes above.
#[kretprobe]
fn kretprobe_copy_continue(ctx: RetProbeContext) -> u32 {
    copy::continue_copy(&ctx, CONTINUE_KRETPROBE);
    0
}
