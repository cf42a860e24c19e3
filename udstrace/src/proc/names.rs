//! Socket names as users write them: a path, `@name` for an abstract name, and globs over
//! either.

/// The user-facing form of a socket name: the path, or `@` and the abstract name.
#[must_use]
pub(crate) fn display(name: &[u8]) -> String {
    match name.split_first() {
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        _ => String::from_utf8_lossy(name).into_owned(),
    }
}

#[cfg(test)]
/// Whether `text` matches `pattern`, where `*` matches any run of bytes (including `/`) and
/// `?` any one byte. Works on bytes: no allocation, so it can run per record.
#[must_use]
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    glob_bytes(
        pattern.as_bytes(),
        Text {
            at: false,
            rest: text.as_bytes(),
        },
    )
}

/// A name as users write it, without building it: an optional `@` then bytes.
#[derive(Clone, Copy)]
struct Text<'a> {
    at: bool,
    rest: &'a [u8],
}

impl Text<'_> {
    fn len(self) -> usize {
        self.rest.len() + usize::from(self.at)
    }

    fn get(self, i: usize) -> u8 {
        if self.at {
            if i == 0 {
                b'@'
            } else {
                self.rest[i - 1]
            }
        } else {
            self.rest[i]
        }
    }
}

fn glob_bytes(p: &[u8], t: Text<'_>) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t.get(ti)) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether a raw socket name (abstract names start with NUL) matches `pattern`, exactly as
/// [`glob`] would against its [`display`] form, without building that form: this runs per
/// record.
#[must_use]
pub(crate) fn name_matches(pattern: &str, name: &[u8]) -> bool {
    let text = match name.split_first() {
        Some((0, rest)) => Text { at: true, rest },
        _ => Text {
            at: false,
            rest: name,
        },
    };
    let p = pattern.as_bytes();
    literal_ends_match(p, text) && glob_bytes(p, text)
}

/// Whether the literal bytes of pattern `p` before its first wildcard begin `t` and those
/// after its last end it: true for every match, and for a name against a list of patterns
/// (the protocols' well-known sockets) false for nearly all the others, at the cost of a few
/// byte comparisons instead of the glob's backtracking over `*/...` patterns.
fn literal_ends_match(p: &[u8], t: Text<'_>) -> bool {
    let wild = |c: &u8| *c == b'*' || *c == b'?';
    let Some(first) = p.iter().position(wild) else {
        return p.len() == t.len() && p.iter().enumerate().all(|(i, &c)| c == t.get(i));
    };
    let after = p.len() - p.iter().rposition(wild).map_or(p.len(), |i| i + 1);
    first <= t.len()
        && after <= t.len()
        && p[..first].iter().enumerate().all(|(i, &c)| c == t.get(i))
        && p[p.len() - after..]
            .iter()
            .enumerate()
            .all(|(k, &c)| c == t.get(t.len() - after + k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        assert_eq!(display(b"/run/x.sock"), "/run/x.sock");
        assert_eq!(display(b"\0abstract"), "@abstract");
        assert_eq!(display(b""), "");
    }

    #[test]
    fn globs() {
        assert!(glob("/run/*.sock", "/run/docker.sock"));
        assert!(glob("*/.s.PGSQL.*", "/var/run/postgresql/.s.PGSQL.5432"));
        assert!(glob("@/tmp/.X11-unix/X?", "@/tmp/.X11-unix/X0"));
        assert!(glob("*", ""));
        assert!(!glob("/run/*.sock", "/run/docker.socket"));
        assert!(!glob("?", ""));
        assert!(glob("a*b*c", "a-b-b-c"));
        assert!(!glob("a*b*c", "a-b-b-d"));
    }

    #[test]
    fn raw_names() {
        assert!(name_matches("@abs*", b"\0abstract"));
        assert!(!name_matches("abs*", b"\0abstract"));
        assert!(name_matches("@x", b"\0x"));
        assert!(
            name_matches("*/.X11-unix/X0", b"\0/tmp/.X11-unix/X0"),
            "as against @/tmp/..."
        );
        for (p, n) in [
            ("@a*", &b"\0abc"[..]),
            ("*c", b"\0abc"),
            ("?abc", b"\0abc"),
            ("abc", b"\0abc"),
            ("/x*", b"/xy"),
            ("*/docker.sock", b"/run/docker.sock"),
            ("*/docker.sock", b"/run/docker.socket"),
            ("*/docker.sock", b"/docker.sock"),
            ("*/docker.sock", b"docker.sock"),
            ("*/redis/*.sock", b"/run/redis/redis.sock"),
            ("*/redis/*.sock", b"/run/redis.sock"),
            ("a*a", b"a"),
            ("a*a", b"aa"),
            ("a?", b"a"),
            ("?", b""),
            ("", b""),
            ("", b"x"),
            ("@/run/user/*/dbus-*", b"\0/run/user/1000/dbus-XYZ"),
            ("@/run/user/*/dbus-*", b"/run/user/1000/dbus-XYZ"),
            ("/tmp/dbus-*", b"/tmp/conn.sock"),
        ] {
            assert_eq!(name_matches(p, n), glob(p, &display(n)), "{p} {n:?}");
        }
        assert!(name_matches("/run/*.sock", b"/run/docker.sock"));
        assert!(name_matches("*", b""));
    }
}
