//! Golden files: a capture built from fixed records must come out byte for byte as
//! `testdata/golden.pcapng`, and tshark must read that file as `testdata/golden.tshark.txt`.
//! `UDSTRACE_UPDATE_GOLDEN=1 cargo test golden` rewrites both after a deliberate change.

use std::{path::PathBuf, process::Command};

use udstrace_common::record::flags;

use super::{
    pcapng::{CaptureInfo, Stats},
    sink::{PcapngSink, Sink},
};
use crate::{
    capture::{clock::WallClock, Packetizer},
    packet::Holder,
    proc::{
        container_names::ContainerNames,
        peers::{Fixed, PeerResolver},
    },
    tracer::record::{testing::RawRecord, SendSegment},
};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// The records: an HTTP exchange on a stream socket (the server's socket had no inode when
/// the request was sent), a datagram to an abstract socket, a seqpacket message, a message cut
/// at the snap length, a sendfile whose payload the kernel could not see, and a loss.
fn records() -> Vec<RawRecord> {
    let (client, server) = (Some(0xffff_8880_0000_1000), Some(0xffff_8880_0000_2000));
    let stream =
        |sock_ino, sock_id, peer_ino, peer_id, path: &'static [u8], peer_path: &'static [u8]| {
            RawRecord {
                sock_ino,
                peer_ino,
                sock_id,
                peer_id,
                path,
                peer_path,
                ..RawRecord::default()
            }
        };
    let request = b"GET /info HTTP/1.1\r\nHost: docker\r\n\r\n".to_vec();
    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
    vec![
        RawRecord {
            comm: b"curl",
            msg_len: request.len() as u64,
            payload: request,
            ts_boot_ns: 1_000_000_000,
            ..stream(100, client, 0, server, b"", b"/run/docker.sock\0")
        },
        RawRecord {
            comm: b"dockerd",
            pid: 200,
            tid: 201,
            msg_len: reply.len() as u64,
            payload: reply,
            ts_boot_ns: 1_000_500_000,
            ..stream(101, server, 100, client, b"/run/docker.sock\0", b"")
        },
        RawRecord {
            sock_type: 2,
            sock_ino: 300,
            peer_ino: 0,
            msg_len: 5,
            payload: b"dgram".to_vec(),
            path: b"",
            peer_path: b"",
            ts_boot_ns: 1_001_000_000,
            ..RawRecord::default()
        },
        RawRecord {
            sock_type: 5,
            sock_ino: 400,
            peer_ino: 401,
            msg_len: 9,
            payload: b"seqpacket".to_vec(),
            path: b"\0abstract-name",
            peer_path: b"",
            ts_boot_ns: 1_002_000_000,
            ..RawRecord::default()
        },
        RawRecord {
            sock_ino: 500,
            peer_ino: 501,
            msg_len: 70_000,
            flags: flags::LAST | flags::SNAPLEN,
            payload: b"first bytes only".to_vec(),
            ts_boot_ns: 1_003_000_000,
            lost_segments: 2,
            ..RawRecord::default()
        },
        RawRecord {
            sock_ino: 500,
            peer_ino: 501,
            stream_offset: 70_000,
            msg_len: 1000,
            flags: flags::LAST | flags::PAYLOAD_MISSING,
            payload: Vec::new(),
            ts_boot_ns: 1_004_000_000,
            lost_segments: 2,
            ..RawRecord::default()
        },
    ]
}

/// The client's process holds the client socket: the server's reply names it as the reader.
fn fake_holders() -> std::collections::HashMap<u64, Vec<Holder>> {
    std::collections::HashMap::from([(
        100,
        vec![Holder {
            pid: 100,
            comm: "curl".into(),
            fd: 5,
            container: String::new(),
        }],
    )])
}

fn build() -> Vec<u8> {
    let info = CaptureInfo {
        section_comment: "udstrace golden file".into(),
        hardware: "x86_64".into(),
        os: "Linux".into(),
        application: "udstrace".into(),
        if_name: "udstrace".into(),
        if_description: "Unix domain sockets; headers synthesised".into(),
        snaplen: 65_084,
    };
    let mut sink = PcapngSink::new(Vec::new(), &info);
    // Boot time 1 s is 2023-11-14T22:13:21Z.
    let mut p = Packetizer::new(WallClock::with_offset(1_700_000_000_000_000_000), None)
        .with_id_key(7)
        .with_peers(PeerResolver::with_source(Box::new(Fixed(fake_holders()))))
        .with_containers(ContainerNames::off());
    for r in records() {
        let bytes = r.encode();
        p.record(&SendSegment::try_from(bytes.as_slice()).unwrap(), &mut sink)
            .unwrap();
    }
    let stats = Stats {
        start_ns: 1_700_000_001_000_000_000,
        end_ns: 1_700_000_002_000_000_000,
        received: 10,
        dropped: 2,
    };
    sink.finish(&stats).unwrap();
    sink.into_output().unwrap()
}

fn tshark(path: &std::path::Path) -> String {
    let fields = [
        "frame.number",
        "frame.len",
        "frame.cap_len",
        "ipv6.src",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "tcp.seq_raw",
        "tcp.ack_raw",
        "udp.srcport",
        "udp.dstport",
        "frame.packet_flags_direction",
        "frame.drop_count",
        "frame.comment",
        "_ws.col.Protocol",
    ];
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "header=y"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .env("HOME", "/nonexistent")
        .output()
        .expect("tshark (installed by cargo xtask setup)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn golden_capture_and_its_tshark_reading() {
    let bytes = build();
    let file = testdata("golden.pcapng");
    let text = testdata("golden.tshark.txt");
    if std::env::var_os("UDSTRACE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&file, &bytes).unwrap();
        std::fs::write(&text, tshark(&file)).unwrap();
    }
    let golden = std::fs::read(&file).expect("testdata/golden.pcapng");
    assert!(
        bytes == golden,
        "the capture differs from testdata/golden.pcapng"
    );
    assert_eq!(
        tshark(&file),
        std::fs::read_to_string(&text).unwrap(),
        "tshark reads the golden file differently"
    );
}
