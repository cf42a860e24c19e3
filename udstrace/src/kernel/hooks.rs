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

/// The BTF tracepoints the tracepoint backend attaches to (6.3+): sends, and receives
/// (`--recv`).
pub(crate) const SEND_TRACEPOINT: &str = "sock_send_length";
pub(crate) const RECV_TRACEPOINT: &str = "sock_recv_length";

/// The names of the types BTF-typed programs are loaded against: each function a backend may
/// hook, and each tracepoint's `btf_trace_*` typedef.
#[must_use]
pub(crate) fn program_load_targets() -> Vec<String> {
    SendFunctions::ALL
        .into_iter()
        .map(String::from)
        .chain([SEND_TRACEPOINT, RECV_TRACEPOINT].map(|t| format!("btf_trace_{t}")))
        .collect()
}

/// The kernel functions the function-hook backends attach to.
pub(crate) struct SendFunctions;

impl SendFunctions {
    /// Always there (5.10 ... 6.18).
    pub(crate) const SENDMSG: [&'static str; 3] = [
        "unix_stream_sendmsg",
        "unix_dgram_sendmsg",
        "unix_seqpacket_sendmsg",
    ];

    /// The send functions to hook: the three sendmsg, and `unix_stream_sendpage` with
    /// `sendpage` (where it exists: before 6.5, `sendfile` and `splice` go through it).
    pub(crate) fn with_sendpage(sendpage: bool) -> impl Iterator<Item = &'static str> {
        Self::SENDMSG
            .into_iter()
            .chain(sendpage.then_some("unix_stream_sendpage"))
    }

    /// The receive functions (`--recv`), same prototype in 5.10 ... 6.18.
    pub(crate) const RECVMSG: [&'static str; 3] = [
        "unix_stream_recvmsg",
        "unix_dgram_recvmsg",
        "unix_seqpacket_recvmsg",
    ];

    /// Every function a backend may hook on any kernel.
    pub(crate) const ALL: [&'static str; 7] = [
        Self::SENDMSG[0],
        Self::SENDMSG[1],
        Self::SENDMSG[2],
        "unix_stream_sendpage",
        Self::RECVMSG[0],
        Self::RECVMSG[1],
        Self::RECVMSG[2],
    ];

    /// Why the functions cannot be hooked by trampolines, if one is not in the kernel's BTF
    /// (a trampoline program is loaded against the function's BTF).
    #[must_use]
    pub(crate) fn missing(kernel: &KernelFacts) -> Option<String> {
        Self::SENDMSG
            .into_iter()
            .chain(Self::RECVMSG)
            .find(|f| !kernel.btf_functions.iter().any(|g| g == f))
            .map(|f| format!("kernel {} has no function {f} in its BTF", kernel.release))
    }

    /// Why the functions cannot be hooked by kprobes, if one is not a symbol of the kernel:
    /// a kprobe needs only the symbol (arm64's 5.10 has BTF without these static functions).
    /// Without `/proc/kallsyms`, as [`Self::missing`].
    #[must_use]
    pub(crate) fn missing_symbol(kernel: &KernelFacts) -> Option<String> {
        if kernel.symbol_functions().is_empty() {
            return Self::missing(kernel);
        }
        Self::SENDMSG
            .into_iter()
            .chain(Self::RECVMSG)
            .find(|f| !kernel.symbol_functions().iter().any(|g| g == f))
            .map(|f| {
                format!(
                    "kernel {} has no function {f} in /proc/kallsyms",
                    kernel.release
                )
            })
    }
}
