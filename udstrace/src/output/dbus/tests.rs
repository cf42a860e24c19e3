//! The D-Bus splitter against messages built here as the specification lays them out.

use super::*;

/// A message: `kind`, `serial`, header fields `(code, signature, value)`, `body`.
pub(crate) fn message(
    big: bool,
    kind: u8,
    serial: u32,
    header: &[(u8, &str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut m = vec![if big { b'B' } else { b'l' }, kind, 0, 1];
    m.extend_from_slice(&u32b(body.len() as u32));
    m.extend_from_slice(&u32b(serial));
    m.extend_from_slice(&[0; 4]);
    for (i, (code, sig, value)) in header.iter().enumerate() {
        if i > 0 {
            while m.len() % 8 != 0 {
                m.push(0);
            }
        }
        m.extend_from_slice(&[*code, 1, sig.as_bytes()[0], 0]);
        match *sig {
            "s" | "o" => {
                m.extend_from_slice(&u32b(value.len() as u32));
                m.extend_from_slice(value.as_bytes());
                m.push(0);
            }
            "g" => {
                m.push(value.len() as u8);
                m.extend_from_slice(value.as_bytes());
                m.push(0);
            }
            "u" => m.extend_from_slice(&u32b(value.parse().unwrap())),
            _ => unreachable!(),
        }
    }
    let fields_len = (m.len() - 16) as u32;
    m[12..16].copy_from_slice(&u32b(fields_len));
    while m.len() % 8 != 0 {
        m.push(0);
    }
    m.extend_from_slice(body);
    m
}

fn list_names(serial: u32) -> Vec<u8> {
    message(
        false,
        1,
        serial,
        &[
            (1, "o", "/org/freedesktop/DBus"),
            (6, "s", "org.freedesktop.DBus"),
            (2, "s", "org.freedesktop.DBus"),
            (3, "s", "ListNames"),
        ],
        b"",
    )
}

fn reply(serial: u32, to: u32) -> Vec<u8> {
    let to = to.to_string();
    message(
        false,
        2,
        serial,
        &[(5, "u", &to), (8, "g", "as"), (9, "u", "1")],
        &[4, 0, 0, 0, 1, 0, 0, 0, b'x', 0, 0, 0],
    )
}

fn split(d: &mut Direction, data: &[u8], byte_by_byte: bool) -> Vec<Message> {
    let mut out = Vec::new();
    if byte_by_byte {
        for b in data {
            d.feed(std::slice::from_ref(b), &mut out);
        }
    } else {
        d.feed(data, &mut out);
    }
    out
}

#[test]
fn header_and_fields() {
    let m = list_names(7);
    let f = fixed(&m).unwrap();
    assert_eq!(f.kind, Kind::MethodCall);
    assert_eq!(f.serial, 7);
    assert_eq!(f.total, m.len() as u64);
    let h = fields(&f, &m).unwrap();
    assert_eq!(h.path.as_deref(), Some("/org/freedesktop/DBus"));
    assert_eq!(h.member.as_deref(), Some("ListNames"));
    assert_eq!(h.interface.as_deref(), Some("org.freedesktop.DBus"));
    assert_eq!(h.destination.as_deref(), Some("org.freedesktop.DBus"));

    let r = reply(3, 7);
    let h = fields(&fixed(&r).unwrap(), &r).unwrap();
    assert_eq!(h.reply_serial, Some(7));
    assert_eq!(h.signature.as_deref(), Some("as"));
    assert_eq!(h.unix_fds, Some(1));

    let big = message(
        true,
        4,
        9,
        &[(1, "o", "/a"), (2, "s", "x.y"), (3, "s", "Z")],
        b"",
    );
    let f = fixed(&big).unwrap();
    assert!(f.big_endian);
    assert_eq!(f.kind, Kind::Signal);
    assert_eq!(fields(&f, &big).unwrap().member.as_deref(), Some("Z"));
}

#[test]
fn implausible_headers_refused() {
    let m = list_names(1);
    for (i, b) in [(0, b'x'), (1, 0), (1, 5), (3, 2), (2, 0x80)] {
        let mut bad = m.clone();
        bad[i] = b;
        assert_eq!(fixed(&bad), None, "byte {i} = {b}");
    }
    let mut zero_serial = m.clone();
    zero_serial[8..12].copy_from_slice(&[0; 4]);
    assert_eq!(fixed(&zero_serial), None);
    // A method call without a member; a field of the wrong type.
    let no_member = message(false, 1, 1, &[(1, "o", "/")], b"");
    assert_eq!(fields(&fixed(&no_member).unwrap(), &no_member), None);
    let wrong = message(false, 1, 1, &[(1, "s", "/"), (3, "s", "M")], b"");
    assert_eq!(fields(&fixed(&wrong).unwrap(), &wrong), None);
    // Cut fields.
    assert_eq!(fields(&fixed(&m).unwrap(), &m[..30]), None);
}

#[test]
fn client_auth_then_messages() {
    let mut stream = b"\0AUTH EXTERNAL 30\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n".to_vec();
    let auth = stream.len() as u64;
    let (a, b) = (list_names(1), list_names(2));
    stream.extend_from_slice(&a);
    stream.extend_from_slice(&b);
    for byte_by_byte in [false, true] {
        let mut d = Direction::default();
        let out = split(&mut d, &stream, byte_by_byte);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bytes, a);
        assert_eq!(out[1].bytes, b);
        assert_eq!(out[0].note, Note::Msg);
        assert_eq!(out[1].note, Note::Msg);
        assert_eq!(out[0].start, auth);
        assert_eq!(out[1].start, auth + a.len() as u64);
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn server_auth_then_messages() {
    let mut stream = b"OK 6a1e0e2c5d\r\nAGREE_UNIX_FD\r\n".to_vec();
    let r = reply(1, 1);
    stream.extend_from_slice(&r);
    for byte_by_byte in [false, true] {
        let out = split(&mut Direction::default(), &stream, byte_by_byte);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, r);
    }
    // A big-endian message right after the server's lines is not taken for a line.
    let mut stream = b"OK 6a1e\r\n".to_vec();
    let big = message(true, 2, 1, &[(5, "u", "1")], b"");
    stream.extend_from_slice(&big);
    let out = split(&mut Direction::default(), &stream, true);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].bytes, big);
}

#[test]
fn mid_stream_start_resynchronises() {
    let (a, b, c) = (list_names(1), reply(2, 9), list_names(3));
    let mut stream = a[23..].to_vec();
    let skipped = stream.len() as u64;
    stream.extend_from_slice(&b);
    stream.extend_from_slice(&c);
    for byte_by_byte in [false, true] {
        let out = split(&mut Direction::default(), &stream, byte_by_byte);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bytes, b);
        assert_eq!(out[0].note, Note::Resync(skipped));
        assert_eq!(out[1].bytes, c);
        assert_eq!(out[1].note, Note::Msg);
    }
    // A capture that began between messages: no bytes skipped.
    let out = split(&mut Direction::default(), &c, false);
    assert_eq!(out[0].note, Note::Msg);
}

#[test]
fn loss_is_noted_on_the_next_message() {
    let (a, b, c) = (list_names(1), list_names(2), list_names(3));
    let mut d = Direction::default();
    let mut out = split(&mut d, b"\0AUTH EXTERNAL\r\nBEGIN\r\n", false);
    out.extend(split(&mut d, &a, false));
    out.extend(split(&mut d, &b[..20], false));
    d.lose();
    // The next packet starts in the middle of a message.
    let mut rest = c[..10].to_vec();
    rest.extend_from_slice(&c);
    out.extend(split(&mut d, &rest, false));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].bytes, a);
    assert_eq!(out[1].bytes, c);
    assert_eq!(out[1].note, Note::Resync(30));
}

#[test]
fn long_message_skipped_and_noted() {
    let body = vec![7u8; BUFFER_CAP + 8];
    let long = message(false, 2, 5, &[(5, "u", "1"), (8, "g", "ay")], &body);
    let next = reply(6, 2);
    let mut d = Direction::default();
    let mut out = split(&mut d, b"OK 1\r\n", false);
    for chunk in long.chunks(65_024) {
        out.extend(split(&mut d, chunk, false));
        assert!(d.buffered() <= 65_024);
    }
    out.extend(split(&mut d, &next, false));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].bytes, next);
    assert_eq!(out[0].note, Note::Skipped(long.len() as u64));
}

#[test]
fn garbage_is_not_a_message_and_memory_is_bounded() {
    let mut d = Direction::default();
    // Bytes that look like headers but whose fields do not parse.
    let mut fake = list_names(1);
    fake[16] = 200;
    fake[17] = 40;
    let mut out = Vec::new();
    for _ in 0..20_000 {
        d.feed(&fake, &mut out);
        d.feed(b"lllllBBBB junk", &mut out);
        assert!(d.buffered() <= (RESYNC_MAX_FIELDS + 16 + 4096) as usize);
    }
    assert!(out.is_empty());
    let good = list_names(2);
    d.feed(&good, &mut out);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].note, Note::Resync(n) if n > 0));
}

#[test]
fn detection() {
    assert_eq!(opens_auth(b"\0"), None);
    assert_eq!(opens_auth(b"\0AUT"), None);
    assert_eq!(opens_auth(b"\0AUTH EXTERNAL 30\r\n"), Some(true));
    assert_eq!(opens_auth(b"GET / HTTP/1.1"), Some(false));
    assert_eq!(opens_auth(b"\0AUTHX"), Some(false));
    let names = BusNames::new(&["/srv/bus=dbus".into(), "/x=http".into()]);
    for yes in [
        &b"/run/dbus/system_bus_socket"[..],
        b"/var/run/dbus/system_bus_socket",
        b"/run/user/1000/bus",
        b"/run/systemd/private",
        b"\0/tmp/dbus-AbCdEf",
        b"/srv/bus",
    ] {
        assert!(names.matches(yes), "{}", String::from_utf8_lossy(yes));
    }
    for no in [
        &b""[..],
        b"/x",
        b"/run/user/1000/bus2",
        b"/var/run/docker.sock",
    ] {
        assert!(!names.matches(no), "{}", String::from_utf8_lossy(no));
    }
}
