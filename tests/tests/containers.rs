//! Containers, with a real dockerd (Debian's docker.io, started here when it is not running):
//! a server in a container bound to a bind-mounted socket, a client on the host; every packet
//! names the container of its sender and of its receiver, as docker itself names it.

use std::process::Command;

use udstrace_tests::{
    docker::{dockerd, Server},
    read_capture, TempDir, Udstrace,
};

/// A request from the host and its reply: the request names the server's container as its
/// receiver, the reply names it as its sender (name and full id, as `docker inspect` gives
/// them), and the host's client is in no container.
#[test]
fn container_server_and_host_client_are_named() {
    dockerd();
    let dir = TempDir::new("container");
    let sock_dir = dir.path("sock");
    std::fs::create_dir_all(&sock_dir).unwrap();
    let name = format!("udstrace-web-{}", std::process::id());
    let server = Server::start(&name, &sock_dir);
    let file = dir.path("capture.pcapng");
    let ud = Udstrace::start(&["-w", file.to_str().unwrap(), "--comm", "python3"]);
    let socket = sock_dir.join("app.sock");
    // Receivers are found in /proc when udstrace writes the packet: the client sends once
    // the server has accepted (a connection not accepted yet is received by the listener's
    // holders, found by the listener's name through sock_diag, which sees no socket of the
    // container's network namespace), and both ends stay open for half a second.
    let client = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys, time\n\
             c = socket.socket(socket.AF_UNIX)\n\
             c.connect(sys.argv[1])\n\
             time.sleep(0.2)\n\
             c.sendall(b'ping')\n\
             print(c.recv(100).decode(), flush=True)\n\
             time.sleep(0.5)\n",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "pong:ping");
    let done = ud.stop();
    assert!(done.success, "{:?}", done.stderr);
    let cap = read_capture(&file);
    let request = cap
        .packets
        .iter()
        .find(|p| p.payload() == b"ping")
        .expect("the request is captured");
    let reply = cap
        .packets
        .iter()
        .find(|p| p.payload() == b"pong:ping")
        .expect("the reply is captured");
    assert_eq!(request.meta("container"), None, "{}", request.comment);
    assert_eq!(
        request.meta("peer_container"),
        Some(server.name.as_str()),
        "{}",
        request.comment
    );
    assert_eq!(
        reply.meta("container"),
        Some(server.name.as_str()),
        "{}",
        reply.comment
    );
    assert_eq!(
        reply.meta("container_id"),
        Some(server.id.as_str()),
        "{}",
        reply.comment
    );
    assert!(reply.meta("cgroup").is_some(), "{}", reply.comment);
    assert_eq!(reply.meta("peer_container"), None, "{}", reply.comment);
}
