//! What comes from `/proc` and sock_diag: the machine's sockets and who holds them, the
//! receivers of a message, what a passed descriptor is, and socket names as users write them.

pub(crate) mod cgroups;
pub(crate) mod fds;
pub(crate) mod names;
pub(crate) mod peers;
pub(crate) mod sockets;
