//! Which protocol a socket speaks, told to Wireshark through the synthesised port numbers:
//! Wireshark picks its dissectors by port (pgsql on 5432, x11 on 6000-6063) or by heuristics
//! (HTTP). The end of a conversation whose own name matches gets the protocol's port; the other
//! end keeps its dynamic port, so the conversation looks like a client talking to a server.

use crate::proc::names::{display, name_matches};

/// A protocol udstrace knows the port of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    Pgsql,
    /// X11 display N: port 6000 + N.
    X11,
    /// D-Bus: no port; whole messages on the D-Bus interface (`dbus.rs`).
    Dbus,
    /// Any other TCP/UDP port.
    Port(u16),
}

impl Protocol {
    /// Parses `http`, `pgsql`, `x11` or a port number.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Self::Http),
            "pgsql" | "postgresql" => Ok(Self::Pgsql),
            "x11" => Ok(Self::X11),
            "dbus" => Ok(Self::Dbus),
            _ => s
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .map(Self::Port)
                .ok_or_else(|| {
                    format!("unknown protocol `{s}` (expected http, pgsql, x11 or a port number)")
                }),
        }
    }
}

/// Rules from socket names to protocols: the user's first (`--decode`), then the built-in ones.
#[derive(Debug, Clone)]
pub(crate) struct Ports {
    rules: Vec<(String, Protocol)>,
}

/// Sockets whose protocol is known without asking: PostgreSQL, X11, and daemons that serve
/// HTTP APIs on Unix sockets.
const BUILT_IN: &[(&str, Protocol)] = &[
    ("*/.s.PGSQL.*", Protocol::Pgsql),
    ("/tmp/.X11-unix/X*", Protocol::X11),
    ("@/tmp/.X11-unix/X*", Protocol::X11),
    ("*/docker.sock", Protocol::Http),
    ("*/podman.sock", Protocol::Http),
    ("*/snapd.socket", Protocol::Http),
    ("*/snapd-snap.socket", Protocol::Http),
    ("*/lxd/unix.socket", Protocol::Http),
    ("*/incus/unix.socket", Protocol::Http),
];

impl Ports {
    /// The built-in rules after `PATH=PROTOCOL` rules from the command line.
    pub(crate) fn new(user: &[String]) -> Result<Self, String> {
        let mut rules = Vec::new();
        for spec in user {
            let (path, proto) = spec
                .rsplit_once('=')
                .ok_or_else(|| format!("--decode `{spec}` is not PATH=PROTOCOL"))?;
            rules.push((path.to_string(), Protocol::parse(proto)?));
        }
        rules.extend(BUILT_IN.iter().map(|(p, proto)| ((*p).to_string(), *proto)));
        Ok(Self { rules })
    }

    /// The service port of a socket with this bound name, if a rule names it.
    #[must_use]
    pub(crate) fn port(&self, name: &[u8]) -> Option<u16> {
        if name.is_empty() {
            return None;
        }
        let proto = self.rules.iter().find(|(p, _)| name_matches(p, name))?.1;
        let name = display(name);
        match proto {
            Protocol::Http => Some(80),
            Protocol::Pgsql => Some(5432),
            Protocol::Port(p) => Some(p),
            Protocol::Dbus => None,
            Protocol::X11 => {
                // Display number: the digits after the last "X".
                let n: u16 = name.rsplit_once('X')?.1.parse().ok()?;
                (n < 64).then_some(6000 + n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_rules() {
        let d = Ports::new(&[]).unwrap();
        assert_eq!(d.port(b"/var/run/postgresql/.s.PGSQL.5433"), Some(5432));
        assert_eq!(d.port(b"/tmp/.X11-unix/X7"), Some(6007));
        assert_eq!(d.port(b"\0/tmp/.X11-unix/X0"), Some(6000));
        assert_eq!(
            d.port(b"/tmp/.X11-unix/X99"),
            None,
            "x11 ports stop at display 63"
        );
        assert_eq!(d.port(b"/run/docker.sock"), Some(80));
        assert_eq!(d.port(b"/run/other.sock"), None);
        assert_eq!(d.port(b""), None);
    }

    #[test]
    fn user_rules_come_first() {
        let d = Ports::new(&["/run/docker.sock=8080".into(), "@my-*=pgsql".into()]).unwrap();
        assert_eq!(d.port(b"/run/docker.sock"), Some(8080));
        assert_eq!(d.port(b"\0my-db"), Some(5432));
        assert!(Ports::new(&["nopath".into()]).is_err());
        assert!(Ports::new(&["/x=gopher".into()]).is_err());
        assert!(Ports::new(&["/x=0".into()]).is_err());
    }
}
