//! The comment codec, and the table held against the Lua plugin and docs/FORMAT.md.

use std::borrow::Cow;

use super::*;
use crate::packet::values::{Bytes, Holder};

fn meta(path: &[u8]) -> Meta<'_> {
    Meta {
        pid: 42,
        tid: 43,
        comm: Bytes(Cow::Borrowed(b"my prog")),
        uid: 0,
        gid: 5,
        sock_type: SockType::SeqPacket,
        ino: 9,
        peer_ino: 10,
        path: Bytes(Cow::Borrowed(path)),
        peer_path: Bytes(Cow::Borrowed(b"\0abs=1")),
        syscall: Syscall(46),
        msg_len: 100,
        payload: Some(Cut::Snaplen),
        ..Meta::default()
    }
}

#[test]
fn comment_text() {
    let mut s = String::new();
    meta(b"/run/a b.sock").write_comment(&mut s);
    assert_eq!(
        s,
        "pid=42 tid=43 comm=my\\x20prog uid=0 gid=5 type=seqpacket ino=9 peer_ino=10 \
         path=/run/a\\x20b.sock peer_path=@abs\\x3d1 syscall=sendmsg msg_len=100 payload=snaplen"
    );
}

#[test]
fn comment_round_trips() {
    for path in [&b"/run/x"[..], b"", b"@literal", b"\0", b"\xff\\\x01"] {
        let mut s = String::new();
        let v = meta(path);
        v.write_comment(&mut s);
        let m: Meta = s.parse().unwrap();
        assert_eq!(&*m.path, path, "{s}");
        assert_eq!(&*m.peer_path, b"\0abs=1");
        assert_eq!(&*m.comm, b"my prog");
        assert_eq!(
            (m.pid, m.tid, m.uid, m.gid, m.ino, m.peer_ino),
            (42, 43, 0, 5, 9, 10)
        );
        assert_eq!(m.sock_type, SockType::SeqPacket);
        assert_eq!(m.syscall, Syscall(46));
        assert_eq!(m.payload, Some(Cut::Snaplen));
        assert_eq!(m, v, "every field reads back");
    }
}

#[test]
fn peers_round_trip() {
    let peers = [
        Holder {
            pid: 7,
            comm: "a,b".into(),
            fd: 3,
            container: String::new(),
        },
        Holder {
            pid: 8,
            comm: "sh".into(),
            fd: 4,
            container: String::new(),
        },
    ];
    let mut v = meta(b"");
    v.peers = Peers(Cow::Borrowed(&peers));
    let mut s = String::new();
    v.write_comment(&mut s);
    assert!(s.contains(" peer_pid=7,8 peer_comm=a\\x2cb,sh "), "{s}");
    let m: Meta = s.parse().unwrap();
    assert_eq!(
        m.peers
            .iter()
            .map(|h| (h.pid, h.comm.as_str()))
            .collect::<Vec<_>>(),
        [(7, "a,b"), (8, "sh")]
    );
}

#[test]
fn control_data_round_trips_and_is_shown_in_text() {
    let mut v = meta(b"");
    v.cred_pid = Some(-1);
    v.cred_uid = Some(0);
    v.cred_gid = Some(0);
    v.fds = Raw(Cow::Borrowed("3:/etc/hosts,4:pipe:[7]"));
    v.control = Raw(Cow::Borrowed("cut:512"));
    let mut s = String::new();
    v.write_comment(&mut s);
    assert!(
        s.ends_with(
            " payload=snaplen cred_pid=-1 cred_uid=0 cred_gid=0 fds=3:/etc/hosts,4:pipe:[7] \
             control=cut:512"
        ),
        "{s}"
    );
    let m: Meta = s.parse().unwrap();
    assert_eq!(m, v);
    let mut text = String::new();
    v.write_text_fields(&mut text);
    assert_eq!(
        text,
        " cred_pid=-1 cred_uid=0 cred_gid=0 fds=3:/etc/hosts,4:pipe:[7] control=cut:512"
    );
}

#[test]
fn later_keys_are_skipped() {
    let m: Meta = "type=dgram pid=3 container=web-1".parse().unwrap();
    assert_eq!((m.sock_type, m.pid), (SockType::Dgram, 3));
}

#[test]
fn foreign_comment_is_an_error() {
    assert!("hello world".parse::<Meta>().is_err());
    assert!("pid=1".parse::<Meta>().is_err());
    assert!("pid=x type=stream".parse::<Meta>().is_err());
    assert!("type=stream peer_pid=1,x".parse::<Meta>().is_err());
}

#[test]
fn keys_are_unique() {
    for (i, f) in FIELDS.iter().enumerate() {
        assert!(
            FIELDS[..i].iter().all(|g| g.key != f.key),
            "{} twice",
            f.key
        );
    }
}

/// The Lua plugin's fields come from the table alone: its template declares none, and the
/// plugin `extcap install` writes declares every key once, with the table's type and title,
/// and shows them in the table's order.
#[test]
fn lua_plugin_follows_the_table() {
    let template = include_str!("../../../lua/udstrace.lua");
    assert!(
        !template.contains("ProtoField."),
        "lua/udstrace.lua declares a field by hand"
    );
    assert_eq!(template.matches("\n-- @FIELDS@\n").count(), 1);
    let lua = crate::cli::extcap::lua_plugin();
    let mut declared = Vec::new();
    for line in lua.lines() {
        let Some((_, rest)) = line.split_once("= ProtoField.") else {
            continue;
        };
        let (ctor, args) = rest.split_once('(').expect("ProtoField.type(");
        let mut quoted = args.split('"').skip(1).step_by(2);
        let name = quoted.next().expect("a field name");
        let title = quoted.next().expect("a title");
        let key = name.strip_prefix("udstrace.").expect("udstrace.<key>");
        declared.push((key.to_string(), ctor.to_string(), title.to_string()));
    }
    let mut expected: Vec<_> = FIELDS
        .iter()
        .map(|f| {
            (
                f.key.to_string(),
                f.lua.constructor().to_string(),
                f.title.to_string(),
            )
        })
        .collect();
    declared.sort();
    expected.sort();
    assert_eq!(declared, expected, "the plugin's ProtoFields");
    let order_line = lua
        .split("local order = {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("the plugin's `order` list");
    let order: Vec<&str> = order_line.split('"').skip(1).step_by(2).collect();
    let keys: Vec<&str> = FIELDS.iter().map(|f| f.key).collect();
    assert_eq!(order, keys, "the plugin's `order`");
}

/// docs/FORMAT.md's table of comment keys lists the table's keys, in its order.
#[test]
fn format_doc_follows_the_table() {
    let doc = include_str!("../../../../docs/FORMAT.md");
    let table = doc
        .split("| key | value |")
        .nth(1)
        .expect("docs/FORMAT.md has a `| key | value |` table");
    let mut keys = Vec::new();
    for row in table.lines().skip(2) {
        let Some(cell) = row.strip_prefix("| ") else {
            break;
        };
        let first = cell.split(" |").next().unwrap_or("");
        keys.extend(first.split('`').skip(1).step_by(2));
    }
    let expected: Vec<&str> = FIELDS.iter().map(|f| f.key).collect();
    assert_eq!(keys, expected, "docs/FORMAT.md's key table");
}

#[test]
fn comments_reuse_the_sender_part_only_while_it_is_the_same() {
    let holder = |pid, comm: &str| Holder {
        pid,
        comm: comm.into(),
        fd: 3,
        container: String::new(),
    };
    let peers_a = [holder(7, "srv")];
    let peers_b = [holder(7, "srv"), holder(8, "srv, 2")];
    let mut sequence = Vec::new();
    for (i, path) in [&b"/run/a"[..], b"/run/a", b"", b"/run/a", b"\0x y"]
        .into_iter()
        .enumerate()
    {
        let mut m = meta(path);
        m.msg_len = 10 * i as u64;
        m.seg_offset = (i % 2 == 0).then_some(65_024);
        m.fds = Raw(Cow::Borrowed(if i == 1 { "5:socket" } else { "" }));
        sequence.push(m.clone());
        // The same sender again, then a change in each kind of sender field.
        sequence.push(m.clone());
        let mut other = m.clone();
        other.tid = 44;
        sequence.push(other);
        let mut other = m.clone();
        other.peers = Peers(Cow::Borrowed(if i % 2 == 0 { &peers_a } else { &peers_b }));
        other.peer_by = Some(PeerBy::Proc);
        sequence.push(other.clone());
        sequence.push(other);
        let mut other = m.clone();
        other.container = Some(Bytes(Cow::Borrowed(b"web")));
        other.dir = Dir::Recv;
        sequence.push(other);
    }
    // Twice, and interleaved with itself reversed: senders kept, evicted and found again.
    let mut comments = Comments::default();
    let mut expected = String::new();
    let reversed = sequence.iter().rev();
    for m in sequence
        .iter()
        .chain(sequence.iter().zip(reversed).flat_map(|(a, b)| [a, b]))
    {
        m.write_comment(&mut expected);
        assert_eq!(comments.write(m), expected);
    }
}
