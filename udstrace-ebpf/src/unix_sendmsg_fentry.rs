//! fentry/fexit backend: BPF trampolines on the Unix socket send and receive functions (5.5+).
//!
//! The hooked functions are in net/unix/af_unix.c, with the same prototypes from 5.10 to 6.18
//! (`unix_stream_sendpage`, for sendfile/splice to a stream socket, until 6.4); each hook's
//! `match-proto` line names the one it was written against. An fexit program sees the
//! arguments, then the return value.
#![allow(
    clippy::needless_pass_by_value,
    reason = "aya's program macros call each program with its context by value"
)]

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
    EbpfContext,
};
use udstrace_common::maps::CONTINUE_FEXIT;

use crate::{
    config, copy,
    kernel::{self, Btf, Probe, Reader},
    sendmsg,
};

/// Argument `n` as a plain number. The verifier types pointer arguments of trampoline
/// programs (`struct page *` is a `ptr_page`), and before 5.11 it refuses arithmetic between
/// such a pointer and an unbounded number, which `page_address()` needs.
#[inline(always)]
fn untyped_arg(ctx: &FEntryContext, n: u32) -> u64 {
    kernel::read::<u64>(ctx.as_ptr() as u64, n * 8).unwrap_or(0)
}

/// The `struct sock` of the hooked function's `struct socket *` (its first argument), loaded
/// through the typed argument: a pointer the typed reader can follow.
#[inline(always)]
fn typed_sk(ctx: &FExitContext) -> u64 {
    Btf::read::<u64>(ctx.arg::<u64>(0), config::layout().socket_sk).unwrap_or(0)
}

/// An fentry program noting the message at entry, and two fexit programs recording it at
/// exit: one copying under `bpf_loop`, one (`_seq`) for kernels without it. Userspace loads
/// one of the two. The doc comment (the hooked function's `match-proto` line) goes on all three.
macro_rules! hooks {
    ($(#[$doc:meta])* $function:literal, $entry:ident, $exit:ident, $exit_seq:ident, $ret:ty,
     $ret_index:literal, |$ctx:ident| $enter:expr) => {
        $(#[$doc])*
        #[fentry(function = $function)]
        fn $entry($ctx: FEntryContext) -> i32 {
            $enter;
            0
        }

        $(#[$doc])*
        #[fexit(function = $function)]
        fn $exit(ctx: FExitContext) -> i32 {
            let ret = i64::from(ctx.arg::<$ret>($ret_index));
            // Kernels with bpf_loop (5.17+) have the helpers the typed reader needs
            // (`bpf_skc_to_unix_sock`, 5.16; `bpf_get_current_task_btf`, 5.11).
            let sk = typed_sk(&ctx);
            sendmsg::exit::<true, Btf, _>(&ctx, CONTINUE_FEXIT, ret, sk);
            0
        }

        $(#[$doc])*
        #[fexit(function = $function)]
        fn $exit_seq(ctx: FExitContext) -> i32 {
            let ret = i64::from(ctx.arg::<$ret>($ret_index));
            sendmsg::exit::<false, Probe, _>(&ctx, CONTINUE_FEXIT, ret, 0);
            0
        }
    };
}

hooks!(
    /// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
    "unix_stream_sendmsg",
    fentry_unix_stream_sendmsg,
    fexit_unix_stream_sendmsg,
    fexit_unix_stream_sendmsg_seq,
    i32,
    3,
    |ctx| sendmsg::enter_sendmsg(ctx.arg(0), ctx.arg(1))
);
hooks!(
    /// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
    "unix_dgram_sendmsg",
    fentry_unix_dgram_sendmsg,
    fexit_unix_dgram_sendmsg,
    fexit_unix_dgram_sendmsg_seq,
    i32,
    3,
    |ctx| sendmsg::enter_sendmsg(ctx.arg(0), ctx.arg(1))
);
hooks!(
    /// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
    "unix_seqpacket_sendmsg",
    fentry_unix_seqpacket_sendmsg,
    fexit_unix_seqpacket_sendmsg,
    fexit_unix_seqpacket_sendmsg_seq,
    i32,
    3,
    |ctx| sendmsg::enter_sendmsg(ctx.arg(0), ctx.arg(1))
);
hooks!(
    /// match-proto: v6.4 net/unix/af_unix.c: static ssize_t unix_stream_sendpage(struct socket *socket, struct page *page, int offset, size_t size, int flags)
    "unix_stream_sendpage",
    fentry_unix_stream_sendpage,
    fexit_unix_stream_sendpage,
    fexit_unix_stream_sendpage_seq,
    i64,
    5,
    |ctx| sendmsg::enter_sendpage(ctx.arg(0), untyped_arg(&ctx, 1), ctx.arg(2), ctx.arg(3))
);

hooks!(
    /// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
    "unix_stream_recvmsg",
    fentry_unix_stream_recvmsg,
    fexit_unix_stream_recvmsg,
    fexit_unix_stream_recvmsg_seq,
    i32,
    4,
    |ctx| sendmsg::enter_recvmsg(ctx.arg(0), ctx.arg(1), ctx.arg(3))
);
hooks!(
    /// match-proto: v6.18 net/unix/af_unix.c: static int unix_dgram_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
    "unix_dgram_recvmsg",
    fentry_unix_dgram_recvmsg,
    fexit_unix_dgram_recvmsg,
    fexit_unix_dgram_recvmsg_seq,
    i32,
    4,
    |ctx| sendmsg::enter_recvmsg(ctx.arg(0), ctx.arg(1), ctx.arg(3))
);
hooks!(
    /// match-proto: v6.18 net/unix/af_unix.c: static int unix_seqpacket_recvmsg(struct socket *sock, struct msghdr *msg, size_t size, int flags)
    "unix_seqpacket_recvmsg",
    fentry_unix_seqpacket_recvmsg,
    fexit_unix_seqpacket_recvmsg,
    fexit_unix_seqpacket_recvmsg_seq,
    i32,
    4,
    |ctx| sendmsg::enter_recvmsg(ctx.arg(0), ctx.arg(1), ctx.arg(3))
);

/// The copy loop's continuation on kernels without `bpf_loop`: never attached, only
/// tail-called from the fexit programs above (a tail call needs a program of the same type;
/// it is loaded against `unix_stream_sendmsg`, which it does not use).
/// match-proto: v6.18 net/unix/af_unix.c: static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len)
#[fexit(function = "unix_stream_sendmsg")]
fn fexit_copy_continue(ctx: FExitContext) -> i32 {
    copy::continue_copy(&ctx, CONTINUE_FEXIT);
    0
}
