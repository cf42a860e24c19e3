//! What comes from `/proc` and sock_diag: the machine's sockets and who holds them, the
//! receivers of a message, what a passed descriptor is, socket names as users write them, the
//! machine's network namespaces, which container a process is in, and what `--container`,
//! `--pod` and `--path` name.

pub(crate) mod cgroups;
pub(crate) mod container_filter;
pub(crate) mod container_names;
pub(crate) mod containers;
pub(crate) mod fds;
pub(crate) mod names;
pub(crate) mod netns;
pub(crate) mod path_filter;
pub(crate) mod peers;
pub(crate) mod sockets;
