//! systemd's readiness protocol (`Type=notify`): `READY=1` once the programs are attached and
//! the output is open, `STOPPING=1` when the capture stops; each one datagram to the socket
//! `$NOTIFY_SOCKET` names (a path, or `@name` for an abstract one). Without the variable,
//! nothing is sent.

use std::{
    io,
    os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixDatagram},
    },
};

/// Where readiness is reported.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    name: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, if it does; an unusable value is said in one line
    /// and ignored (the capture runs all the same).
    pub(crate) fn from_env() -> Option<Self> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy().into_owned();
        match Self::new(&name) {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("udstrace: NOTIFY_SOCKET={name}: {e}; readiness is not reported");
                None
            }
        }
    }

    fn new(name: &str) -> io::Result<Self> {
        let to = match name.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
            None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a socket path or @name",
                ))
            }
        };
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            to,
            name: name.to_string(),
        })
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, ...); a failure is said in one line.
    pub(crate) fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.to) {
            eprintln!("udstrace: cannot send {state} to {}: {e}", self.name);
        }
    }
}
