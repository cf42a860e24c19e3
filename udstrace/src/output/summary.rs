//! One-line protocol summaries for the text view, where tcpdump prints a protocol line: the
//! HTTP request or status line, PostgreSQL's messages (the query of a simple Query, the
//! statement of a Parse), Redis's commands and replies, MySQL's commands (the query) and the
//! kind of each answer.
//!
//! The protocol is the one the synthesised port says ([`Protocol::of_port`], the rules of
//! `ports.rs`), to the server's port (a request) or from it (a reply); then the bytes must
//! look like it (an HTTP method or `HTTP/1.`, a known PostgreSQL message type with a sane
//! length, a RESP type byte and a line ending in CRLF): a write that is not the start of a
//! protocol message gets no summary. Pure functions of the headers and payload.

use std::fmt::Write as _;

use super::{headers::IPV6_LEN, ports::Protocol};

/// Longest summary, in characters, before `...`.
const MAX_LEN: usize = 200;
/// Longest argument or value shown, in bytes, before `...`.
const MAX_ARG: usize = 64;
/// Longest HTTP request or status line shown, in bytes, before `...`.
const MAX_HTTP_LINE: usize = 160;

/// Appends `: PROTO: summary` for a packet with synthesised `headers` (IPv6 + TCP/UDP) and
/// `payload`, if the packet's port names a protocol and the payload starts one of its
/// messages.
pub(crate) fn write_summary(out: &mut String, headers: &[u8], payload: &[u8]) {
    let Some((src, dst)) = ports(headers) else {
        return;
    };
    if let Some(s) = summary(src, dst, payload) {
        out.push_str(": ");
        out.push_str(&s);
    }
}

/// The source and destination ports of synthesised headers.
fn ports(headers: &[u8]) -> Option<(u16, u16)> {
    let l4 = headers.get(IPV6_LEN..IPV6_LEN + 4)?;
    Some((
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    ))
}

/// The summary of a payload sent from port `src` to port `dst`, as `PROTO: text`.
fn summary(src: u16, dst: u16, payload: &[u8]) -> Option<String> {
    let (proto, request) = match (Protocol::of_port(dst), Protocol::of_port(src)) {
        (Some(p), _) => (p, true),
        (None, Some(p)) => (p, false),
        (None, None) => return None,
    };
    let mut s = match proto {
        Protocol::Http => format!("HTTP: {}", http(payload, request)?),
        Protocol::Pgsql => format!("PGSQL: {}", pgsql(payload, request)?),
        Protocol::Redis => format!("RESP: {}", resp(payload, request)?),
        Protocol::Mysql => format!("MySQL: {}", mysql(payload, request)?),
        _ => return None,
    };
    if s.len() > MAX_LEN {
        let mut end = MAX_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    Some(s)
}

/// Appends `bytes` readably: printable ASCII and space as is, `"` and `\` escaped, line
/// endings and tabs as `\r` `\n` `\t`, other bytes as `\xNN`; at most [`MAX_ARG`] bytes, then
/// `...`.
fn push_text(out: &mut String, bytes: &[u8]) {
    push_text_max(out, bytes, MAX_ARG);
}

/// [`push_text`] with at most `max` bytes.
fn push_text_max(out: &mut String, bytes: &[u8], max: usize) {
    for &b in bytes.iter().take(max) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b' '..=b'~' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > max {
        out.push_str("...");
    }
}

/// `bytes` as a word: as is when printable with no space or quote, otherwise quoted.
fn push_word(out: &mut String, bytes: &[u8]) {
    let plain = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain {
        push_text(out, bytes);
    } else {
        out.push('"');
        push_text(out, bytes);
        out.push('"');
    }
}

/// The first line of `payload`, without its CRLF, if it has one.
fn first_line(payload: &[u8]) -> Option<&[u8]> {
    let end = payload.windows(2).position(|w| w == b"\r\n")?;
    Some(&payload[..end])
}

// ---------------------------------------------------------------- HTTP/1

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The request line (`GET /path HTTP/1.1`) or status line (`HTTP/1.1 200 OK`).
fn http(payload: &[u8], request: bool) -> Option<String> {
    let line = first_line(payload)?;
    let ok = if request {
        let mut words = line.split(|&b| b == b' ');
        let method = words.next()?;
        let _target = words.next()?;
        let version = words.next()?;
        METHODS.iter().any(|m| m.as_bytes() == method)
            && version.starts_with(b"HTTP/1.")
            && words.next().is_none()
    } else {
        line.starts_with(b"HTTP/1.")
            && line.len() >= 12
            && line[8] == b' '
            && line[9..12].iter().all(u8::is_ascii_digit)
    };
    ok.then(|| {
        let mut s = String::new();
        push_text_max(&mut s, line, MAX_HTTP_LINE);
        s
    })
}

// ---------------------------------------------------------------- PostgreSQL

/// The startup-phase requests that have no type byte: their codes.
const PG_SSL_REQUEST: u32 = 80_877_103;
const PG_GSSENC_REQUEST: u32 = 80_877_104;
const PG_CANCEL_REQUEST: u32 = 80_877_102;
const PG_PROTOCOL_3: u32 = 0x0003_0000;

/// The messages of a PostgreSQL payload: `Query "SELECT 1"`, `Parse "SELECT $1", Bind, ...`;
/// repeated message types are counted (`DataRow x3`).
fn pgsql(payload: &[u8], request: bool) -> Option<String> {
    if request {
        if let Some(s) = pg_startup(payload) {
            return Some(s);
        }
    } else if payload == b"S" || payload == b"N" {
        // The answer to SSLRequest / GSSENCRequest.
        return Some(format!("SSL/GSS answer {}", char::from(payload[0])));
    }
    let mut parts: Vec<(String, usize)> = Vec::new();
    let mut rest = payload;
    while let Some((&ty, after)) = rest.split_first() {
        let Some(len) = after.get(..4) else {
            break;
        };
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        let name = pg_name(ty, request);
        if !(4..=1 << 30).contains(&len) || name.is_none() {
            if parts.is_empty() {
                return None;
            }
            break;
        }
        let body = after.get(4..len.min(after.len()))?;
        let mut part = name?.to_string();
        pg_detail(&mut part, ty, request, body);
        match parts.last_mut() {
            Some((last, n)) if *last == part => *n += 1,
            _ => parts.push((part, 1)),
        }
        let Some(next) = after.get(len..) else {
            rest = &[];
            break;
        };
        rest = next;
    }
    if parts.is_empty() {
        return None;
    }
    let mut s = String::new();
    for (i, (part, n)) in parts.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(part);
        if *n > 1 {
            let _ = write!(s, " x{n}");
        }
    }
    if !rest.is_empty() {
        s.push_str(", ...");
    }
    Some(s)
}

/// A startup-phase message (length, then a code instead of a type byte).
fn pg_startup(payload: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let code = u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?);
    if len != payload.len() || len > 10_000 {
        return None;
    }
    match code {
        PG_SSL_REQUEST => Some("SSLRequest".into()),
        PG_GSSENC_REQUEST => Some("GSSENCRequest".into()),
        PG_CANCEL_REQUEST => Some("CancelRequest".into()),
        PG_PROTOCOL_3 => {
            // key\0value\0 ... \0: show user and database.
            let mut s = String::from("StartupMessage");
            let mut fields = payload[8..].split(|&b| b == 0);
            while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                if k == b"user" || k == b"database" {
                    s.push(' ');
                    push_text(&mut s, k);
                    s.push('=');
                    push_word(&mut s, v);
                }
            }
            Some(s)
        }
        _ => None,
    }
}

/// The name of a message type, by direction (frontend to server, or backend).
fn pg_name(ty: u8, request: bool) -> Option<&'static str> {
    Some(if request {
        match ty {
            b'Q' => "Query",
            b'P' => "Parse",
            b'B' => "Bind",
            b'E' => "Execute",
            b'D' => "Describe",
            b'S' => "Sync",
            b'H' => "Flush",
            b'C' => "Close",
            b'X' => "Terminate",
            b'p' => "Password/SASL",
            b'F' => "FunctionCall",
            b'd' => "CopyData",
            b'c' => "CopyDone",
            b'f' => "CopyFail",
            _ => return None,
        }
    } else {
        match ty {
            b'R' => "Authentication",
            b'S' => "ParameterStatus",
            b'K' => "BackendKeyData",
            b'Z' => "ReadyForQuery",
            b'T' => "RowDescription",
            b'D' => "DataRow",
            b'C' => "CommandComplete",
            b'E' => "ErrorResponse",
            b'N' => "NoticeResponse",
            b'1' => "ParseComplete",
            b'2' => "BindComplete",
            b'3' => "CloseComplete",
            b'n' => "NoData",
            b's' => "PortalSuspended",
            b'I' => "EmptyQueryResponse",
            b't' => "ParameterDescription",
            b'A' => "NotificationResponse",
            b'G' => "CopyInResponse",
            b'H' => "CopyOutResponse",
            b'd' => "CopyData",
            b'c' => "CopyDone",
            b'v' => "NegotiateProtocolVersion",
            _ => return None,
        }
    })
}

/// The detail worth a line: the query text, the command tag, the error message, the
/// authentication method.
fn pg_detail(out: &mut String, ty: u8, request: bool, body: &[u8]) {
    let cstr = |b: &[u8]| -> Vec<u8> { b.split(|&c| c == 0).next().unwrap_or(b).to_vec() };
    match (request, ty) {
        (true, b'Q') | (false, b'C') => {
            out.push_str(" \"");
            push_text(out, &cstr(body));
            out.push('"');
        }
        (true, b'P') => {
            // statement name \0 query \0 ...
            let mut it = body.splitn(3, |&c| c == 0);
            let name = it.next().unwrap_or_default();
            let query = it.next().unwrap_or_default();
            if !name.is_empty() {
                out.push(' ');
                push_word(out, name);
            }
            out.push_str(" \"");
            push_text(out, query);
            out.push('"');
        }
        (false, b'E' | b'N') => {
            // Fields: a type byte and a C string each; M is the message, S the severity.
            let mut severity = None;
            let mut message = None;
            for field in body.split(|&c| c == 0) {
                match field.split_first() {
                    Some((b'S', v)) => severity = Some(v),
                    Some((b'M', v)) => message = Some(v),
                    _ => {}
                }
            }
            if let Some(v) = severity {
                out.push(' ');
                push_text(out, v);
            }
            if let Some(v) = message {
                out.push_str(" \"");
                push_text(out, v);
                out.push('"');
            }
        }
        (false, b'R') => {
            let method = body
                .get(..4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
            let name = match method {
                Some(0) => "Ok",
                Some(3) => "CleartextPassword",
                Some(5) => "MD5Password",
                Some(10) => "SASL",
                Some(11) => "SASLContinue",
                Some(12) => "SASLFinal",
                _ => "",
            };
            if !name.is_empty() {
                out.push(' ');
                out.push_str(name);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- Redis (RESP)

/// Deepest nesting of RESP aggregates parsed.
const MAX_DEPTH: usize = 4;
/// Most elements of an aggregate shown.
const MAX_ELEMENTS: usize = 8;

/// A command (`SET key value`, from an array of bulk strings or an inline command) or a reply
/// (`+OK`, `-ERR ...`, `:5`, `$5 hello`, `$-1`, `*2 [a, b]`); `(+N more)` after the first of
/// pipelined messages.
fn resp(payload: &[u8], request: bool) -> Option<String> {
    let mut s = String::new();
    let mut rest = payload;
    let mut more = 0;
    let mut first = true;
    while !rest.is_empty() {
        let mut part = String::new();
        let parsed = if request {
            resp_command(&mut part, rest)
        } else {
            resp_value(&mut part, rest, 0, true)
        };
        let Some(next) = parsed else {
            if first {
                // A reply too long for the capture still shows its start.
                if !request && !part.is_empty() && valid_reply_start(rest) {
                    return Some(format!("{part}..."));
                }
                return None;
            }
            break;
        };
        if first {
            s = part;
            first = false;
        } else {
            more += 1;
        }
        rest = next;
    }
    if first {
        return None;
    }
    if more > 0 {
        let _ = write!(s, " (+{more} more)");
    }
    Some(s)
}

/// Whether `payload` opens with a RESP type byte and a complete first line.
fn valid_reply_start(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|b| b"+-:$*_#,(=%~>|!".contains(b))
        && first_line(payload).is_some()
}

/// One command: an array of bulk strings, or an inline command line. The bytes after it.
fn resp_command<'a>(out: &mut String, payload: &'a [u8]) -> Option<&'a [u8]> {
    if payload.first() == Some(&b'*') {
        let line = first_line(payload)?;
        let n: usize = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
        let mut rest = &payload[line.len() + 2..];
        if n == 0 || n > 1 << 20 {
            return None;
        }
        for i in 0..n {
            let (bulk, next) = resp_bulk(rest)?;
            if i > 0 {
                out.push(' ');
            }
            if i < MAX_ELEMENTS * 2 {
                push_word(out, bulk);
            } else {
                let _ = write!(out, "... ({} arguments)", n - 1);
                // Skip the remaining arguments without showing them.
                rest = next;
                for _ in i + 1..n {
                    rest = resp_bulk(rest)?.1;
                }
                return Some(rest);
            }
            rest = next;
        }
        Some(rest)
    } else {
        // Inline command: a word, then printable text, ending in CRLF.
        let line = first_line(payload)?;
        if !line.first().is_some_and(u8::is_ascii_alphabetic)
            || !line.iter().all(|&b| (b' '..=b'~').contains(&b))
        {
            return None;
        }
        push_text(out, line);
        Some(&payload[line.len() + 2..])
    }
}

/// A bulk string `$len\r\nbytes\r\n`: its bytes and what follows.
fn resp_bulk(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    if payload.first() != Some(&b'$') {
        return None;
    }
    let line = first_line(payload)?;
    let len: usize = std::str::from_utf8(&line[1..]).ok()?.parse().ok()?;
    let start = line.len() + 2;
    let bulk = payload.get(start..start + len)?;
    if payload.get(start + len..start + len + 2)? != b"\r\n" {
        return None;
    }
    Some((bulk, &payload[start + len + 2..]))
}

/// One RESP value (RESP2 and RESP3 types), written as a reply is shown; the bytes after it.
/// `top`: a bulk string shows its length (`$5 hello`), as elements they show the bytes only.
fn resp_value<'a>(
    out: &mut String,
    payload: &'a [u8],
    depth: usize,
    top: bool,
) -> Option<&'a [u8]> {
    let line = first_line(payload)?;
    let (&ty, text) = line.split_first()?;
    let after = &payload[line.len() + 2..];
    match ty {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
            let text_ok = || std::str::from_utf8(text).ok();
            let ok = match ty {
                b':' => text_ok()?.parse::<i64>().is_ok(),
                b'(' => text_ok()?
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit()),
                b',' => text_ok()?.parse::<f64>().is_ok(),
                b'#' => text == b"t" || text == b"f",
                b'_' => text.is_empty(),
                _ => true,
            };
            if !ok {
                return None;
            }
            out.push(char::from(ty));
            push_text(out, text);
            Some(after)
        }
        b'$' | b'=' | b'!' => {
            let len: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
            if len < 0 {
                out.push_str("$-1");
                return Some(after);
            }
            if top {
                let _ = write!(out, "{}{len} ", char::from(ty));
            }
            let len = usize::try_from(len).ok()?;
            match after.get(..len) {
                Some(bulk) if after.get(len..len + 2) == Some(b"\r\n") => {
                    push_word(out, bulk);
                    Some(&after[len + 2..])
                }
                Some(_) => None,
                None => {
                    // Cut by the capture or split over writes: show what there is.
                    push_text(out, after);
                    None
                }
            }
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let n: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
            out.push(char::from(ty));
            out.push_str(&n.to_string());
            if n < 0 {
                return Some(after);
            }
            let n = usize::try_from(n).ok()? * if matches!(ty, b'%' | b'|') { 2 } else { 1 };
            if n == 0 {
                return Some(after);
            }
            if depth >= MAX_DEPTH {
                return None;
            }
            out.push_str(" [");
            let mut rest = after;
            for i in 0..n {
                if i == MAX_ELEMENTS {
                    out.push_str(", ...");
                }
                let mut element = String::new();
                rest = resp_value(&mut element, rest, depth + 1, false)?;
                if i < MAX_ELEMENTS {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&element);
                }
            }
            out.push(']');
            Some(rest)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- MySQL / MariaDB

/// The first packet of a write: a command (`Query "SELECT 1"`, `Quit`, ...), the login
/// (`Login user=root`), or an answer (`Greeting VERSION`, `OK`, `Error 1064 "..."`, `EOF`,
/// `ResultSet columns=N`); `(+N more)` when the write holds more packets.
fn mysql(payload: &[u8], request: bool) -> Option<String> {
    let header = payload.get(..4)?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let seq = header[3];
    let body = payload.get(4..)?;
    let (&first, rest) = body.split_first()?;
    if len == 0 || (len > body.len() && body.len() < 64) {
        // Not a packet header, or a short write that is not a whole packet.
        return None;
    }
    let whole = body.get(..len).unwrap_or(body);
    let mut s = String::new();
    if request {
        if seq > 0 {
            // The handshake response: capabilities, max packet, charset, 23 bytes, user.
            let user = whole.get(32..)?.split(|&b| b == 0).next()?;
            s.push_str("Login user=");
            push_word(&mut s, user);
        } else {
            let name = match first {
                0x01 => "Quit",
                0x02 => "InitDB",
                0x03 => "Query",
                0x0e => "Ping",
                0x11 => "ChangeUser",
                0x16 => "Prepare",
                0x17 => "Execute",
                0x19 => "StmtClose",
                0x1f => "ResetConnection",
                _ => return None,
            };
            s.push_str(name);
            if matches!(first, 0x02 | 0x03 | 0x16) {
                s.push_str(" \"");
                push_text(&mut s, &whole[1..]);
                s.push('"');
            }
        }
    } else {
        match first {
            0x0a if seq == 0 => {
                s.push_str("Greeting ");
                push_word(&mut s, rest.split(|&b| b == 0).next()?);
            }
            0x00 => s.push_str("OK"),
            0xfe if len < 9 => s.push_str("EOF"),
            0xff => {
                let code = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?);
                let message = rest.get(2..len - 1)?;
                // `#` and a five-character SQL state, then the message.
                let message = match message.split_first() {
                    Some((b'#', m)) => m.get(5..).unwrap_or_default(),
                    _ => message,
                };
                let _ = write!(s, "Error {code} \"");
                push_text(&mut s, message);
                s.push('"');
            }
            0x01..=0xfa if len <= 9 => {
                let _ = write!(s, "ResultSet columns={first}");
            }
            _ => return None,
        }
    }
    // Whole packets after the first, counted.
    let mut more = 0;
    let mut next = body.get(len..).unwrap_or_default();
    while let Some(h) = next.get(..4) {
        let n = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        more += 1;
        next = next.get(4 + n..).unwrap_or_default();
    }
    if more > 0 {
        let _ = write!(s, " (+{more} more)");
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ports::HTTP2_PORT;

    const CLIENT: u16 = 50_000;

    fn to(port: u16, payload: &[u8]) -> Option<String> {
        summary(CLIENT, port, payload)
    }

    fn from(port: u16, payload: &[u8]) -> Option<String> {
        summary(port, CLIENT, payload)
    }

    #[test]
    fn http_request_and_status_lines() {
        assert_eq!(
            to(80, b"GET /v1.43/info HTTP/1.1\r\nHost: docker\r\n\r\n").as_deref(),
            Some("HTTP: GET /v1.43/info HTTP/1.1")
        );
        assert_eq!(
            from(80, b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n{}").as_deref(),
            Some("HTTP: HTTP/1.1 200 OK")
        );
        // A body written on its own, a reply on the request side, no line end: nothing.
        assert_eq!(to(80, b"{\"Image\": \"x\"}\r\n"), None);
        assert_eq!(to(80, b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(to(80, b"GET / HTTP/1.1"), None);
        assert_eq!(from(80, b"HTTP/1.1 2xx OK\r\n"), None);
        // Not on an HTTP port: no summary even for HTTP bytes.
        assert_eq!(to(8080, b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(to(HTTP2_PORT, b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn http_line_is_escaped_and_cut() {
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(b'a', 300));
        req.extend(b" HTTP/1.1\r\n");
        let s = to(80, &req).unwrap();
        assert_eq!(
            s,
            format!("HTTP: GET /{}...", "a".repeat(MAX_HTTP_LINE - 5))
        );
        assert_eq!(
            to(80, b"GET /\x01\"x HTTP/1.0\r\n").as_deref(),
            Some("HTTP: GET /\\x01\\\"x HTTP/1.0")
        );
    }

    fn pg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend(u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        m.extend(body);
        m
    }

    #[test]
    fn pgsql_frontend_messages() {
        assert_eq!(
            to(5432, &pg(b'Q', b"SELECT 'a b' AS x\0")).as_deref(),
            Some("PGSQL: Query \"SELECT 'a b' AS x\"")
        );
        let mut extended = pg(b'P', b"s1\0SELECT $1\0\0\0");
        extended.extend(pg(b'B', b"\0s1\0\0\0\0\0\0\0"));
        extended.extend(pg(b'E', b"\0\0\0\0\0"));
        extended.extend(pg(b'S', b""));
        assert_eq!(
            to(5432, &extended).as_deref(),
            Some("PGSQL: Parse s1 \"SELECT $1\", Bind, Execute, Sync")
        );
        let mut startup = Vec::new();
        let params = b"user\0postgres\0database\0db 1\0application_name\0psql\0\0";
        startup.extend(u32::try_from(8 + params.len()).unwrap().to_be_bytes());
        startup.extend(0x0003_0000_u32.to_be_bytes());
        startup.extend(params);
        assert_eq!(
            to(5432, &startup).as_deref(),
            Some("PGSQL: StartupMessage user=postgres database=\"db 1\"")
        );
        let mut ssl = 8_u32.to_be_bytes().to_vec();
        ssl.extend(PG_SSL_REQUEST.to_be_bytes());
        assert_eq!(to(5432, &ssl).as_deref(), Some("PGSQL: SSLRequest"));
        assert_eq!(
            to(5432, &pg(b'X', b"")).as_deref(),
            Some("PGSQL: Terminate")
        );
        // Not a message start: an unknown type, or a length below 4.
        assert_eq!(to(5432, b"hello world"), None);
        assert_eq!(to(5432, b"Q\0\0\0\x02"), None);
    }

    #[test]
    fn pgsql_backend_messages() {
        let mut reply = pg(
            b'T',
            b"\0\x01answer\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
        );
        reply.extend(pg(b'D', b"\0\x01\0\0\0\x01a"));
        reply.extend(pg(b'D', b"\0\x01\0\0\0\x01b"));
        reply.extend(pg(b'C', b"SELECT 2\0"));
        reply.extend(pg(b'Z', b"I"));
        assert_eq!(
            from(5432, &reply).as_deref(),
            Some("PGSQL: RowDescription, DataRow x2, CommandComplete \"SELECT 2\", ReadyForQuery")
        );
        let err = pg(
            b'E',
            b"SERROR\0VERROR\0C42601\0Msyntax error at or near \"SELEC\"\0\0",
        );
        assert_eq!(
            from(5432, &err).as_deref(),
            Some("PGSQL: ErrorResponse ERROR \"syntax error at or near \\\"SELEC\\\"\"")
        );
        assert_eq!(
            from(5432, &pg(b'R', &[0, 0, 0, 0])).as_deref(),
            Some("PGSQL: Authentication Ok")
        );
        assert_eq!(from(5432, b"N").as_deref(), Some("PGSQL: SSL/GSS answer N"));
        // A message cut by the capture: the ones before it, then `...`.
        let mut cut = pg(b'Z', b"I");
        cut.extend(&pg(b'D', &[b'x'; 100])[..20]);
        assert_eq!(
            from(5432, &cut).as_deref(),
            Some("PGSQL: ReadyForQuery, DataRow")
        );
        let mut junk = pg(b'Z', b"I");
        junk.extend(b"\xff\xff");
        assert_eq!(
            from(5432, &junk).as_deref(),
            Some("PGSQL: ReadyForQuery, ...")
        );
    }

    #[test]
    fn redis_commands() {
        assert_eq!(
            to(
                6379,
                b"*3\r\n$3\r\nSET\r\n$8\r\nudstrace\r\n$11\r\nhello world\r\n"
            )
            .as_deref(),
            Some("RESP: SET udstrace \"hello world\"")
        );
        assert_eq!(
            to(6379, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").as_deref(),
            Some("RESP: GET k (+1 more)")
        );
        assert_eq!(to(6379, b"PING\r\n").as_deref(), Some("RESP: PING"));
        assert_eq!(
            to(6379, b"*2\r\n$3\r\nGET\r\n$2\r\n\x00\x01\r\n").as_deref(),
            Some("RESP: GET \"\\x00\\x01\"")
        );
        let mut many = b"*20\r\n$5\r\nRPUSH\r\n".to_vec();
        for i in 0..19 {
            many.extend(format!("$2\r\n{i:02}\r\n").as_bytes());
        }
        let s = to(6379, &many).unwrap();
        assert!(s.starts_with("RESP: RPUSH 00 01 02"), "{s}");
        assert!(s.ends_with(" 14 ... (19 arguments)"), "{s}");
        // Not a command: a bulk string on its own, binary bytes, no CRLF.
        assert_eq!(to(6379, b"$3\r\nGET\r\n"), None);
        assert_eq!(to(6379, b"\x01\x02\r\n"), None);
        assert_eq!(to(6379, b"*1\r\n$3\r\nGE"), None);
    }

    #[test]
    fn redis_replies() {
        assert_eq!(from(6379, b"+OK\r\n").as_deref(), Some("RESP: +OK"));
        assert_eq!(
            from(6379, b"-ERR unknown command 'FOO'\r\n").as_deref(),
            Some("RESP: -ERR unknown command 'FOO'")
        );
        assert_eq!(from(6379, b":42\r\n").as_deref(), Some("RESP: :42"));
        assert_eq!(
            from(6379, b"$11\r\nhello world\r\n").as_deref(),
            Some("RESP: $11 \"hello world\"")
        );
        assert_eq!(from(6379, b"$-1\r\n").as_deref(), Some("RESP: $-1"));
        assert_eq!(
            from(6379, b"*3\r\n$1\r\na\r\n:1\r\n*-1\r\n").as_deref(),
            Some("RESP: *3 [a, :1, *-1]")
        );
        assert_eq!(
            from(6379, b"%1\r\n+server\r\n+redis\r\n").as_deref(),
            Some("RESP: %1 [+server, +redis]")
        );
        assert_eq!(
            from(6379, b"+OK\r\n+QUEUED\r\n").as_deref(),
            Some("RESP: +OK (+1 more)")
        );
        // A long bulk string cut by the capture: its start.
        assert_eq!(
            from(6379, b"$100\r\nabc").as_deref(),
            Some("RESP: $100 abc...")
        );
        assert_eq!(from(6379, b"hello\r\n"), None);
        assert_eq!(from(6379, b":4x2\r\n"), None);
    }

    fn my(seq: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).unwrap().to_le_bytes();
        let mut p = vec![len[0], len[1], len[2], seq];
        p.extend(body);
        p
    }

    #[test]
    fn mysql_commands_and_answers() {
        assert_eq!(
            to(3306, &my(0, b"\x03SELECT 1+1 AS x")).as_deref(),
            Some("MySQL: Query \"SELECT 1+1 AS x\"")
        );
        assert_eq!(to(3306, &my(0, b"\x01")).as_deref(), Some("MySQL: Quit"));
        let mut login = vec![0u8; 32];
        login.extend(b"root\0\x14");
        assert_eq!(
            to(3306, &my(1, &login)).as_deref(),
            Some("MySQL: Login user=root")
        );
        assert_eq!(
            from(3306, &my(0, b"\x0a10.11.19-MariaDB\0\x01\0\0\0")).as_deref(),
            Some("MySQL: Greeting 10.11.19-MariaDB")
        );
        assert_eq!(
            from(3306, &my(2, b"\0\0\0\x02\0\0\0")).as_deref(),
            Some("MySQL: OK")
        );
        assert_eq!(
            from(3306, &my(1, b"\xff\x28\x04#42000You have an error")).as_deref(),
            Some("MySQL: Error 1064 \"You have an error\"")
        );
        let mut rows = my(1, b"\x01");
        rows.extend(my(2, b"\x03def\0\0\0\x01x"));
        rows.extend(my(3, b"\x012"));
        rows.extend(my(4, b"\xfe\0\0\x02\0"));
        assert_eq!(
            from(3306, &rows).as_deref(),
            Some("MySQL: ResultSet columns=1 (+3 more)")
        );
        // Not a command start, or not a packet.
        assert_eq!(to(3306, &my(0, b"\x99")), None);
        assert_eq!(to(3306, b"\x50\0\0\0\x03SELECT"), None);
        assert_eq!(to(3306, b"\x03\0"), None);
    }

    #[test]
    fn summary_is_bounded() {
        let mut cmd = b"*2\r\n$4\r\nECHO\r\n$300\r\n".to_vec();
        cmd.extend([b'x'; 300]);
        cmd.extend(b"\r\n");
        let s = to(6379, &cmd).unwrap();
        assert_eq!(s, format!("RESP: ECHO {}...", "x".repeat(MAX_ARG)));
        let mut pipeline = Vec::new();
        for _ in 0..40 {
            pipeline.extend(b"*1\r\n$4\r\nPING\r\n");
        }
        assert_eq!(
            to(6379, &pipeline).as_deref(),
            Some("RESP: PING (+39 more)")
        );
    }

    #[test]
    fn ports_from_headers() {
        let mut h = [0u8; 60];
        h[40..42].copy_from_slice(&CLIENT.to_be_bytes());
        h[42..44].copy_from_slice(&6379_u16.to_be_bytes());
        let mut out = String::from("line");
        write_summary(&mut out, &h, b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(out, "line: RESP: PING");
        let mut out = String::new();
        write_summary(&mut out, &h[..40], b"*1\r\n$4\r\nPING\r\n");
        write_summary(&mut out, &h, b"not redis");
        assert_eq!(out, "");
        // Protocols with no summary (yet): nothing.
        h[42..44].copy_from_slice(&6013_u16.to_be_bytes());
        write_summary(&mut out, &h, b"l\0\x0b\0");
        assert_eq!(out, "");
    }
}
