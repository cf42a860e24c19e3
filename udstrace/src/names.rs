//! Socket names as users write them: a path, `@name` for an abstract name, and globs over
//! either.

/// The user-facing form of a socket name: the path, or `@` and the abstract name.
#[must_use]
pub fn display(name: &[u8]) -> String {
    match name.split_first() {
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        _ => String::from_utf8_lossy(name).into_owned(),
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (including `/`)
/// and `?` any one character.
#[must_use]
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
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
    p[pi..].iter().all(|&c| c == '*')
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
}
