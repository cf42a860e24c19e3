//! What comes from `/proc` and sock_diag: the machine's sockets and who holds them, the
//! receivers of a message, what a passed descriptor is, and socket names as users write them.

pub mod fds;
pub mod names;
pub mod peers;
pub mod sockets;
