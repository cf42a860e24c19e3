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
    /// X11 display N: port 6000 + N mod 64 (Wireshark knows x11 on 6000-6063 only).
    X11,
    /// D-Bus: no port; whole messages on the D-Bus interface (`dbus.rs`).
    Dbus,
    /// Redis's RESP.
    Redis,
    /// MySQL and MariaDB.
    Mysql,
    Memcached,
    /// HTTP/2, gRPC included: no port of its own in Wireshark, so [`HTTP2_PORT`], which the
    /// Lua plugin hands to the http2 dissector.
    Http2,
    /// Any other TCP/UDP port.
    Port(u16),
}

/// The port of HTTP/2 (gRPC) sockets. Wireshark 4.0 has neither a port nor a TCP heuristic
/// for HTTP/2 in clear text; the Lua plugin registers this one, which no dissector of 4.0
/// claims and which lies below the dynamic range the other end's port is taken from.
pub(crate) const HTTP2_PORT: u16 = 8000;

/// The names `--decode` accepts, as its error message lists them.
const NAMES: &str =
    "http, pgsql, x11, redis, mysql, memcached, http2 (grpc), dbus or a port number";

impl Protocol {
    /// Parses a protocol's name (`http`, `pgsql`, `x11`, `redis`, `mysql`, `memcached`,
    /// `http2`, `dbus`, and aliases) or a port number.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Self::Http),
            "pgsql" | "postgresql" | "postgres" => Ok(Self::Pgsql),
            "x11" => Ok(Self::X11),
            "dbus" => Ok(Self::Dbus),
            "redis" | "resp" => Ok(Self::Redis),
            "mysql" | "mariadb" => Ok(Self::Mysql),
            "memcached" | "memcache" => Ok(Self::Memcached),
            "http2" | "grpc" => Ok(Self::Http2),
            _ => s
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .map(Self::Port)
                .ok_or_else(|| format!("unknown protocol `{s}` (expected {NAMES})")),
        }
    }

    /// The protocol whose service port is `port`, as [`Ports::port`] chose it (X11: any of
    /// 6000-6063); `None` for a port no rule gives.
    #[must_use]
    pub(crate) fn of_port(port: u16) -> Option<Self> {
        Some(match port {
            80 => Self::Http,
            5432 => Self::Pgsql,
            6000..=6063 => Self::X11,
            6379 => Self::Redis,
            3306 => Self::Mysql,
            11211 => Self::Memcached,
            HTTP2_PORT => Self::Http2,
            _ => return None,
        })
    }
}

/// Rules from socket names to protocols: the user's first (`--decode`), then the built-in ones.
#[derive(Debug, Clone)]
pub(crate) struct Ports {
    rules: Vec<(String, Protocol)>,
}

/// Sockets whose protocol is known without asking: PostgreSQL, X11, Redis, MySQL/MariaDB,
/// memcached, daemons that serve HTTP APIs, and container runtimes and kubelet sockets that
/// serve gRPC. (`containerd.sock.ttrpc` speaks ttrpc, a framing of its own that no Wireshark
/// dissector knows: no rule.)
const BUILT_IN: &[(&str, Protocol)] = &[
    ("*/.s.PGSQL.*", Protocol::Pgsql),
    ("/tmp/.X11-unix/X*", Protocol::X11),
    ("@/tmp/.X11-unix/X*", Protocol::X11),
    ("*/redis.sock", Protocol::Redis),
    ("*/redis-server.sock", Protocol::Redis),
    ("*/redis/*.sock", Protocol::Redis),
    ("*/mysqld.sock", Protocol::Mysql),
    ("*/mysql.sock", Protocol::Mysql),
    ("*/mariadb.sock", Protocol::Mysql),
    ("*/memcached.sock", Protocol::Memcached),
    ("*/memcached/*.sock", Protocol::Memcached),
    ("*/containerd.sock", Protocol::Http2),
    ("*/cri-dockerd.sock", Protocol::Http2),
    ("*/crio.sock", Protocol::Http2),
    ("*/pod-resources/kubelet.sock", Protocol::Http2),
    ("/var/lib/kubelet/plugins*.sock", Protocol::Http2),
    ("/var/lib/kubelet/device-plugins/*.sock", Protocol::Http2),
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
            Protocol::Redis => Some(6379),
            Protocol::Mysql => Some(3306),
            Protocol::Memcached => Some(11211),
            Protocol::Http2 => Some(HTTP2_PORT),
            Protocol::Port(p) => Some(p),
            Protocol::Dbus => None,
            Protocol::X11 => {
                // Display number: the digits after the last "X"; displays 64 and up share
                // Wireshark's 64 ports (the display itself is in the socket's path).
                let n: u16 = name.rsplit_once('X')?.1.parse().ok()?;
                Some(6000 + n % 64)
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
        // Displays 64 and up wrap around Wireshark's 64 x11 ports.
        assert_eq!(d.port(b"/tmp/.X11-unix/X77"), Some(6013));
        assert_eq!(d.port(b"\0/tmp/.X11-unix/X99"), Some(6035));
        assert_eq!(d.port(b"/tmp/.X11-unix/X65535"), Some(6063));
        assert_eq!(d.port(b"/tmp/.X11-unix/Xabc"), None);
        assert_eq!(d.port(b"/run/redis/redis-server.sock"), Some(6379));
        assert_eq!(d.port(b"/tmp/t/redis.sock"), Some(6379));
        assert_eq!(d.port(b"/run/mysqld/mysqld.sock"), Some(3306));
        assert_eq!(d.port(b"/var/lib/mysql/mysql.sock"), Some(3306));
        assert_eq!(d.port(b"/run/memcached/memcached.sock"), Some(11211));
        assert_eq!(d.port(b"/run/containerd/containerd.sock"), Some(HTTP2_PORT));
        assert_eq!(d.port(b"/run/containerd/containerd.sock.ttrpc"), None);
        assert_eq!(d.port(b"/run/cri-dockerd.sock"), Some(HTTP2_PORT));
        assert_eq!(d.port(b"/var/run/crio/crio.sock"), Some(HTTP2_PORT));
        assert_eq!(
            d.port(b"/var/lib/kubelet/pod-resources/kubelet.sock"),
            Some(HTTP2_PORT)
        );
        assert_eq!(
            d.port(b"/var/lib/kubelet/plugins_registry/csi.example-reg.sock"),
            Some(HTTP2_PORT)
        );
        assert_eq!(
            d.port(b"/var/lib/kubelet/plugins/csi.example/csi.sock"),
            Some(HTTP2_PORT)
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

    /// Every name `--decode` accepts, and the port each gives; the port maps back.
    #[test]
    fn names_and_ports() {
        for (name, port) in [
            ("http", 80),
            ("pgsql", 5432),
            ("postgresql", 5432),
            ("x11", 6000),
            ("redis", 6379),
            ("mysql", 3306),
            ("mariadb", 3306),
            ("memcached", 11211),
            ("http2", HTTP2_PORT),
            ("grpc", HTTP2_PORT),
            ("GRPC", HTTP2_PORT),
        ] {
            let d = Ports::new(&[format!("@sock={name}")]).unwrap();
            let want = if name == "x11" { None } else { Some(port) };
            assert_eq!(d.port(b"\0sock"), want, "{name}");
            let proto = Protocol::parse(name).unwrap();
            assert_eq!(Protocol::of_port(port), Some(proto), "{name}");
        }
        assert_eq!(Protocol::of_port(6063), Some(Protocol::X11));
        assert_eq!(Protocol::of_port(6064), None);
        assert_eq!(Protocol::parse("4242"), Ok(Protocol::Port(4242)));
        let err = Protocol::parse("gopher").unwrap_err();
        assert_eq!(
            err,
            "unknown protocol `gopher` (expected http, pgsql, x11, redis, mysql, memcached, \
             http2 (grpc), dbus or a port number)"
        );
    }
}
