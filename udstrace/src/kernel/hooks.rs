//! The kernel functions the function-hook backends (fentry/fexit, kprobe/kretprobe) attach
//! to, with the prototypes they were written against (net/unix/af_unix.c, unchanged from 5.10
//! to 6.18):
//!
//! ```c
//! static int unix_stream_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
//! static int unix_dgram_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
//! static int unix_seqpacket_sendmsg(struct socket *sock, struct msghdr *msg, size_t len);
//! static ssize_t unix_stream_sendpage(struct socket *socket, struct page *page,
//!                                     int offset, size_t size, int flags); /* until 6.4 */
//! static int unix_stream_recvmsg(struct socket *sock, struct msghdr *msg, size_t size,
//!                                int flags);
//! static int unix_dgram_recvmsg(struct socket *sock, struct msghdr *msg, size_t size,
//!                               int flags);
//! static int unix_seqpacket_recvmsg(struct socket *sock, struct msghdr *msg, size_t size,
//!                                   int flags);
//! ```
//!
//! The tracepoint backend hooks `sock:sock_send_length` and `sock:sock_recv_length` instead
//! (`tracer::backend::tracepoint`).

use super::KernelFacts;

/// The kernel functions the function-hook backends attach to.
pub(crate) struct SendFunctions;

impl SendFunctions {
    /// Always there (5.10 ... 6.18).
    pub(crate) const SENDMSG: [&'static str; 3] = [
        "unix_stream_sendmsg",
        "unix_dgram_sendmsg",
        "unix_seqpacket_sendmsg",
    ];

    /// The functions to hook on this kernel: the three sendmsg, and `unix_stream_sendpage`
    /// where it exists (before 6.5, `sendfile` and `splice` go through it).
    pub(crate) fn of(kernel: &KernelFacts) -> impl Iterator<Item = &'static str> {
        Self::SENDMSG
            .into_iter()
            .chain(kernel.has_sendpage.then_some("unix_stream_sendpage"))
    }

    /// The receive functions (`--recv`), same prototype in 5.10 ... 6.18.
    pub(crate) const RECVMSG: [&'static str; 3] = [
        "unix_stream_recvmsg",
        "unix_dgram_recvmsg",
        "unix_seqpacket_recvmsg",
    ];

    /// Why the functions cannot be hooked, if one is not in the kernel's BTF.
    #[must_use]
    pub(crate) fn missing(kernel: &KernelFacts) -> Option<String> {
        Self::SENDMSG
            .into_iter()
            .chain(Self::RECVMSG)
            .find(|f| !kernel.btf_functions.iter().any(|g| g == f))
            .map(|f| format!("kernel {} has no function {f} in its BTF", kernel.release))
    }
}
