//! fentry/fexit backend: BPF trampolines on the Unix socket send functions (x86_64 5.5+).
//!
//! Written against (net/unix/af_unix.c, identical in 5.10 ... 6.18):
//!   static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
//!   static int unix_dgram_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
//!   static int unix_seqpacket_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
//! and, before 6.5 (sendfile/splice to a stream socket):
//!   static ssize_t unix_stream_sendpage(struct socket *socket, struct page *page,
//!                                       int offset, size_t size, int flags);
//! An fexit program sees the arguments, then the return value.

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};

use crate::{capture, maps::CONTINUE_FEXIT, sendmsg};

#[fentry(function = "unix_stream_sendmsg")]
pub fn fentry_unix_stream_sendmsg(ctx: FEntryContext) -> i32 {
    sendmsg::enter_sendmsg(ctx.arg(0), ctx.arg(1));
    0
}

#[fexit(function = "unix_stream_sendmsg")]
pub fn fexit_unix_stream_sendmsg(ctx: FExitContext) -> i32 {
    sendmsg::exit(&ctx, CONTINUE_FEXIT, i64::from(ctx.arg::<i32>(3)));
    0
}

#[fentry(function = "unix_dgram_sendmsg")]
pub fn fentry_unix_dgram_sendmsg(ctx: FEntryContext) -> i32 {
    sendmsg::enter_sendmsg(ctx.arg(0), ctx.arg(1));
    0
}

#[fexit(function = "unix_dgram_sendmsg")]
pub fn fexit_unix_dgram_sendmsg(ctx: FExitContext) -> i32 {
    sendmsg::exit(&ctx, CONTINUE_FEXIT, i64::from(ctx.arg::<i32>(3)));
    0
}

#[fentry(function = "unix_seqpacket_sendmsg")]
pub fn fentry_unix_seqpacket_sendmsg(ctx: FEntryContext) -> i32 {
    sendmsg::enter_sendmsg(ctx.arg(0), ctx.arg(1));
    0
}

#[fexit(function = "unix_seqpacket_sendmsg")]
pub fn fexit_unix_seqpacket_sendmsg(ctx: FExitContext) -> i32 {
    sendmsg::exit(&ctx, CONTINUE_FEXIT, i64::from(ctx.arg::<i32>(3)));
    0
}

#[fentry(function = "unix_stream_sendpage")]
pub fn fentry_unix_stream_sendpage(ctx: FEntryContext) -> i32 {
    sendmsg::enter_sendpage(ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3));
    0
}

#[fexit(function = "unix_stream_sendpage")]
pub fn fexit_unix_stream_sendpage(ctx: FExitContext) -> i32 {
    sendmsg::exit(&ctx, CONTINUE_FEXIT, ctx.arg::<i64>(5));
    0
}

/// The copy loop's continuation on kernels without `bpf_loop`: never attached, only
/// tail-called from the fexit programs above (a tail call needs a program of the same type;
/// it is loaded against `unix_stream_sendmsg`, which it does not use).
#[fexit(function = "unix_stream_sendmsg")]
pub fn fexit_copy_continue(ctx: FExitContext) -> i32 {
    capture::continue_copy(&ctx, CONTINUE_FEXIT);
    0
}
