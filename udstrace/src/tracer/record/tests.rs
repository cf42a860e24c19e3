//! The decoder against records built as the kernel programs build them.
use super::{
    testing::{cgroup_record, RawRecord},
    *,
};

#[test]
fn decodes_every_field() {
    let raw = RawRecord {
        path: b"\0abstract\0",
        peer_path: b"/run/test.sock\0",
        ..RawRecord::default()
    };
    let bytes = raw.encode();
    let s = SendSegment::try_from(bytes.as_slice()).unwrap();
    assert_eq!(s.meta.pid, 100);
    assert_eq!(s.meta.tid, 101);
    assert_eq!(s.meta.uid, 1000);
    assert_eq!(s.meta.gid, 1001);
    assert_eq!(s.meta.ino, 5000);
    assert_eq!(s.meta.peer_ino, 5001);
    assert_eq!(s.meta.msg_len, 5);
    assert_eq!(s.meta.syscall, Syscall(1));
    assert_eq!(s.meta.sock_type, SockType::Stream);
    assert_eq!(&*s.meta.comm, b"client");
    assert_eq!(
        &*s.meta.path, b"\0abstract\0",
        "abstract names keep every byte"
    );
    assert_eq!(&*s.meta.peer_path, b"/run/test.sock");
    assert_eq!(s.payload, b"hello");
    assert!(s.is_last());
    assert_eq!(s.seg_len(), 5);
}

#[test]
fn rejects_short_and_unknown() {
    let bytes = RawRecord::default().encode();
    assert_eq!(
        SendSegment::try_from(&bytes[..10]),
        Err(DecodeError::Short(10))
    );
    let mut bad = bytes.clone();
    bad[0] = 9;
    assert_eq!(
        SendSegment::try_from(bad.as_slice()),
        Err(DecodeError::Kind(9))
    );
    let bad = RawRecord {
        sock_type: 3,
        ..RawRecord::default()
    }
    .encode();
    assert_eq!(
        SendSegment::try_from(bad.as_slice()),
        Err(DecodeError::SockType(3))
    );
}

/// A segment filled in place in the ring buffer (`copy::direct` in the kernel programs) comes
/// in a record with room for 64 KiB: its payload is its `cap_len` bytes, not the rest.
#[test]
fn payload_is_cap_len_of_a_larger_record() {
    let payload: Vec<u8> = (0..40_000_u32).map(|i| (i % 251) as u8).collect();
    let mut bytes = RawRecord {
        msg_len: 40_000,
        payload: payload.clone(),
        ..RawRecord::default()
    }
    .encode();
    bytes.resize(SEND_RECORD_LEN + 65_536, 0xee);
    let s = SendSegment::try_from(bytes.as_slice()).unwrap();
    assert_eq!(s.payload, payload.as_slice());
    assert_eq!(s.seg_len(), 40_000);
    assert!(s.is_last());
}

#[test]
fn rejects_payload_beyond_buffer_or_message() {
    let bytes = RawRecord::default().encode();
    let cut = &bytes[..bytes.len() - 1];
    assert!(matches!(
        SendSegment::try_from(cut),
        Err(DecodeError::Payload { .. })
    ));
    let bytes = RawRecord {
        msg_len: 3,
        ..RawRecord::default()
    }
    .encode();
    assert!(matches!(
        SendSegment::try_from(bytes.as_slice()),
        Err(DecodeError::Segment { .. })
    ));
    let bytes = RawRecord {
        seg_offset: 7,
        msg_len: 100,
        ..RawRecord::default()
    }
    .encode();
    assert!(matches!(
        SendSegment::try_from(bytes.as_slice()),
        Err(DecodeError::Segment { .. })
    ));
}

#[test]
fn rejects_oversized_path() {
    let mut bytes = RawRecord::default().encode();
    let off = offset_of!(SendRecord, path_len);
    bytes[off..off + 2].copy_from_slice(&200u16.to_ne_bytes());
    assert_eq!(
        SendSegment::try_from(bytes.as_slice()),
        Err(DecodeError::PathLen(200))
    );
}

#[test]
fn empty_datagram_is_valid() {
    let bytes = RawRecord {
        msg_len: 0,
        payload: vec![],
        sock_type: 2,
        ..RawRecord::default()
    }
    .encode();
    let s = SendSegment::try_from(bytes.as_slice()).unwrap();
    assert_eq!(s.seg_len(), 0);
    assert!(s.payload.is_empty());
}

#[test]
fn last_segment_length() {
    let msg_len = u64::from(SEGMENT_MAX) * 2 + 10;
    let bytes = RawRecord {
        msg_len,
        seg_offset: u64::from(SEGMENT_MAX) * 2,
        payload: vec![7; 10],
        ..RawRecord::default()
    }
    .encode();
    let s = SendSegment::try_from(bytes.as_slice()).unwrap();
    assert_eq!(s.seg_len(), 10);
}

/// Control data as `sendmsg` callers build it: a `cmsghdr` and its data, padded to 8.
fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(16 + data.len() as u64).to_ne_bytes());
    b.extend_from_slice(&level.to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(data);
    b.resize(b.len().div_ceil(8) * 8, 0);
    b
}

#[test]
fn control_messages_rights_credentials_other_and_cuts() {
    let fds: Vec<u8> = [3i32, 7, 9].iter().flat_map(|f| f.to_ne_bytes()).collect();
    let cred: Vec<u8> = [1234u32, 1000, 100]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let mut control = cmsg(1, 1, &fds);
    control.extend(cmsg(1, 2, &cred));
    control.extend(cmsg(41, 50, &[1, 2, 3, 4, 5]));
    assert_eq!(
        control_messages(&control),
        vec![
            ControlMessage::Rights(vec![3, 7, 9]),
            ControlMessage::Credentials {
                pid: 1234,
                uid: 1000,
                gid: 100
            },
            ControlMessage::Other {
                level: 41,
                kind: 50,
                len: 5
            },
        ]
    );
    // Cut inside the second message: only the first one.
    assert_eq!(
        control_messages(&control[..40]),
        vec![ControlMessage::Rights(vec![3, 7, 9])]
    );
    // A header claiming less than itself ends the walk.
    let mut bad = control.clone();
    bad[..8].copy_from_slice(&8u64.to_ne_bytes());
    assert!(control_messages(&bad).is_empty());
    assert!(control_messages(&[]).is_empty());
}

fn ancillary_bytes(nfds: u32, cap_len: u32) -> Vec<u8> {
    let mut b = vec![0u8; ANCILLARY_RECORD_LEN];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(
        offset_of!(AncillaryRecord, kind),
        &KIND_ANCILLARY.to_ne_bytes(),
    );
    put(
        offset_of!(AncillaryRecord, header_len),
        &(ANCILLARY_RECORD_LEN as u16).to_ne_bytes(),
    );
    put(offset_of!(AncillaryRecord, pid), &10u32.to_ne_bytes());
    put(offset_of!(AncillaryRecord, tid), &11u32.to_ne_bytes());
    put(
        offset_of!(AncillaryRecord, sock_id),
        &0xabcdu64.to_ne_bytes(),
    );
    put(
        offset_of!(AncillaryRecord, control_len),
        &600u32.to_ne_bytes(),
    );
    put(offset_of!(AncillaryRecord, cap_len), &cap_len.to_ne_bytes());
    put(offset_of!(AncillaryRecord, nfds), &nfds.to_ne_bytes());
    let fd0 = offset_of!(AncillaryRecord, fds);
    put(fd0 + offset_of!(FdInfo, fd), &5i32.to_ne_bytes());
    put(fd0 + offset_of!(FdInfo, mode), &0o100_644u16.to_ne_bytes());
    put(fd0 + offset_of!(FdInfo, name_len), &4u16.to_ne_bytes());
    put(
        fd0 + offset_of!(FdInfo, dev),
        &((8u32 << 20) | 3).to_ne_bytes(),
    );
    put(fd0 + offset_of!(FdInfo, ino), &777u64.to_ne_bytes());
    put(fd0 + offset_of!(FdInfo, name), b"x.db");
    put(fd0 + offset_of!(FdInfo, depth), &[2]);
    put(fd0 + offset_of!(FdInfo, at_root), &[1]);
    put(fd0 + offset_of!(FdInfo, dirs), b"data\0");
    put(fd0 + offset_of!(FdInfo, dirs) + FD_DIR_MAX, b"var\0");
    put(offset_of!(AncillaryRecord, control), &[9; CONTROL_MAX]);
    b
}

#[test]
fn decodes_ancillary_records() {
    let bytes = ancillary_bytes(1, 512);
    let Ok(Record::Ancillary(a)) = Record::try_from(bytes.as_slice()) else {
        panic!("not an ancillary record");
    };
    assert_eq!(
        (a.pid, a.tid, a.sock_id, a.control_len),
        (10, 11, 0xabcd, 600)
    );
    assert_eq!(a.control.len(), 512);
    assert_eq!(
        a.fds,
        vec![PassedFd {
            fd: 5,
            mode: 0o100_644,
            dev_major: 8,
            dev_minor: 3,
            ino: 777,
            name: b"x.db".to_vec(),
            dirs: vec![b"data".to_vec(), b"var".to_vec()],
            at_root: true,
        }]
    );
    assert_eq!(
        Ancillary::try_from(&bytes[..100]),
        Err(DecodeError::Short(100))
    );
    assert_eq!(
        Ancillary::try_from(ancillary_bytes(17, 0).as_slice()),
        Err(DecodeError::Fds(17))
    );
    assert!(matches!(
        Ancillary::try_from(ancillary_bytes(0, 513).as_slice()),
        Err(DecodeError::Payload { cap_len: 513, .. })
    ));
    // A send record still decodes through Record.
    let send = RawRecord::default().encode();
    assert!(matches!(
        Record::try_from(send.as_slice()),
        Ok(Record::Send(_))
    ));
}

/// A cgroup record: its id and path; a path length the record cannot hold, a short record and
/// a header shorter than this version's are errors. The kernel's receiver fields decode too.
#[test]
fn decodes_cgroup_records_and_receivers() {
    let path = b"/system.slice/docker-0123abcd.scope";
    let b = cgroup_record(7302, path);
    match Record::try_from(b.as_slice()) {
        Ok(Record::Cgroup(c)) => assert_eq!((c.id, c.path), (7302, &path[..])),
        other => panic!("{other:?}"),
    }
    let mut long = b.clone();
    long[offset_of!(CgroupRecord, path_len)..][..4]
        .copy_from_slice(&(CGROUP_PATH_MAX as u32).to_ne_bytes());
    assert_eq!(
        CgroupCreated::try_from(long.as_slice()),
        Err(DecodeError::CgroupPathLen(CGROUP_PATH_MAX as u32))
    );
    assert!(CgroupCreated::try_from(&b[..100]).is_err());

    let raw = RawRecord {
        receiver: (4242, receiver::CRED, b"dockerd", 99),
        ..RawRecord::default()
    };
    let bytes = raw.encode();
    let s = SendSegment::try_from(bytes.as_slice()).unwrap();
    assert_eq!(
        s.receiver,
        Some(Receiver {
            pid: 4242,
            comm: b"dockerd",
            cgroup: Some(99),
            by: PeerBy::Cred,
        })
    );
    // Unknown, or a pid of 0: no receiver.
    for receiver in [
        (4242, receiver::UNKNOWN, &b""[..], 0),
        (0, receiver::SENT, b"x", 1),
    ] {
        let bytes = RawRecord {
            receiver,
            ..RawRecord::default()
        }
        .encode();
        assert_eq!(
            SendSegment::try_from(bytes.as_slice()).unwrap().receiver,
            None
        );
    }
}

/// The record fuzz target's seeds (fuzz/corpus/record/seed-*): records of every kind as the
/// kernel programs lay them out, kept in step with the format by this test
/// (`UDSTRACE_UPDATE_GOLDEN=1` rewrites them after a deliberate change). Each decodes.
#[test]
fn fuzz_seeds_are_this_format_s_records() {
    let mut ancillary = ancillary_bytes(1, 0);
    let rights = cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &5i32.to_ne_bytes());
    let cred: Vec<u8> = [1234u32, 1000, 100]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let cred = cmsg(libc::SOL_SOCKET, libc::SCM_CREDENTIALS, &cred);
    let control = [rights, cred].concat();
    let at = offset_of!(AncillaryRecord, control);
    ancillary[at..at + control.len()].copy_from_slice(&control);
    ancillary[offset_of!(AncillaryRecord, cap_len)..][..4]
        .copy_from_slice(&(control.len() as u32).to_ne_bytes());
    ancillary[offset_of!(AncillaryRecord, control_len)..][..4]
        .copy_from_slice(&(control.len() as u32).to_ne_bytes());
    let path = b"/system.slice/docker-0123abcd.scope";
    let cgroup = cgroup_record(7302, path);
    let seeds = [
        ("send", RawRecord::default().encode()),
        (
            "send-named",
            RawRecord {
                path: b"\0abstract\0",
                sock_id: Some(0xffff_8880_0000_1000),
                peer_id: Some(0xffff_8880_0000_2000),
                receiver: (4242, receiver::CRED, b"dockerd", 99),
                ..RawRecord::default()
            }
            .encode(),
        ),
        (
            "send-segment",
            RawRecord {
                flags: 0,
                sock_type: 5,
                msg_len: 1 << 20,
                seg_offset: u64::from(SEGMENT_MAX),
                stream_offset: 3 << 20,
                lost_segments: 2,
                payload: vec![0x42; 64],
                ..RawRecord::default()
            }
            .encode(),
        ),
        ("ancillary", ancillary),
        ("cgroup", cgroup),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/record");
    let update = std::env::var_os("UDSTRACE_UPDATE_GOLDEN").is_some();
    for (name, bytes) in seeds {
        assert!(Record::try_from(bytes.as_slice()).is_ok(), "{name}");
        let file = dir.join(format!("seed-{name}"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, &bytes).unwrap();
        }
        let kept = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            kept == bytes,
            "{} is not this format's record: \
             UDSTRACE_UPDATE_GOLDEN=1 rewrites it",
            file.display()
        );
    }
}
