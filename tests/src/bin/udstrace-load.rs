//! A Unix socket workload for udstrace's benchmark: runs for a fixed time and prints what it
//! did as `ops=N bytes=N secs=S`.
//!
//! ```text
//! udstrace-load pingpong SIZE SECONDS [PATH [CONNECT_PATH]]   request/reply of SIZE bytes
//! udstrace-load bulk SIZE SECONDS [PATH [CONNECT_PATH]] [RATE]  one-way writes of SIZE bytes
//! udstrace-load connect SIZE SECONDS PATH [CONNECT_PATH]       a connection per request
//! udstrace-load loop SIZE SECONDS                               one thread writes SIZE bytes
//!                                                               into a socketpair, reads them
//! ```
//! Without PATH the two ends are a socketpair; with it, a server listens on PATH and the
//! client connects to CONNECT_PATH (default PATH), so that a proxy can sit in between. RATE
//! (bytes/s) paces the bulk writer.
//!
//! `loop` measures the cost of one send and one receive without another thread, scheduler or
//! wakeup in the way: it runs in slices of 50 ms and reports the fastest slice (`ops` and
//! `secs` of that slice), the figure least disturbed by the rest of a shared machine.
// Rates are floating point by design.
#![allow(clippy::cast_precision_loss)]

use std::{
    io::{Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    thread,
    time::{Duration, Instant},
};

fn usage() -> ! {
    eprintln!(
        "usage: udstrace-load pingpong|bulk|connect|loop SIZE SECONDS [PATH [CONNECT_PATH]] [RATE]"
    );
    std::process::exit(2)
}

/// The two connected ends: a socketpair, or a server on `path` and a client through `connect`.
fn pair(path: Option<&str>, connect: Option<&str>) -> (UnixStream, UnixStream) {
    match path {
        None => UnixStream::pair().expect("socketpair"),
        Some(p) => {
            let _ = std::fs::remove_file(p);
            let listener = UnixListener::bind(p).expect("bind");
            let client = UnixStream::connect(connect.unwrap_or(p)).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            (client, server)
        }
    }
}

#[allow(clippy::too_many_lines, reason = "one flat arm per workload")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        usage();
    }
    let size: usize = args[2].parse().unwrap_or_else(|_| usage());
    let secs: f64 = args[3].parse().unwrap_or_else(|_| usage());
    let path = args
        .get(4)
        .map(String::as_str)
        .filter(|p| !p.is_empty() && p.parse::<u64>().is_err());
    let connect = args
        .get(5)
        .map(String::as_str)
        .filter(|p| p.parse::<u64>().is_err());
    let rate: Option<f64> = args
        .last()
        .and_then(|a| a.parse().ok())
        .filter(|_| args.len() > 4);
    let duration = Duration::from_secs_f64(secs);
    let buf = vec![0x5au8; size];
    let start = Instant::now();
    let mut elapsed = None;
    let (ops, bytes) = match args[1].as_str() {
        "pingpong" => {
            let (mut client, mut server) = pair(path, connect);
            let echo = thread::spawn(move || {
                let mut b = vec![0u8; size];
                while server.read_exact(&mut b).is_ok() {
                    if server.write_all(&b).is_err() {
                        break;
                    }
                }
            });
            let mut reply = vec![0u8; size];
            let mut n = 0u64;
            while start.elapsed() < duration {
                client.write_all(&buf).unwrap();
                client.read_exact(&mut reply).unwrap();
                n += 1;
            }
            drop(client);
            echo.join().unwrap();
            (n, n * 2 * size as u64)
        }
        "bulk" => {
            let (mut client, mut server) = pair(path, connect);
            let reader =
                thread::spawn(move || std::io::copy(&mut server, &mut std::io::sink()).unwrap());
            let mut sent = 0u64;
            let mut n = 0u64;
            while start.elapsed() < duration {
                if let Some(r) = rate {
                    let due = Duration::from_secs_f64(sent as f64 / r);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        thread::sleep(wait);
                    }
                }
                client.write_all(&buf).unwrap();
                sent += size as u64;
                n += 1;
            }
            drop(client);
            reader.join().unwrap();
            (n, sent)
        }
        "connect" => {
            let p = path.unwrap_or_else(|| usage()).to_string();
            let _ = std::fs::remove_file(&p);
            let listener = UnixListener::bind(&p).expect("bind");
            let server = thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { break };
                    let mut b = vec![0u8; size];
                    if conn.read_exact(&mut b).is_err() {
                        break;
                    }
                    let _ = conn.write_all(&b);
                }
            });
            let target = connect.unwrap_or(&p).to_string();
            let mut reply = vec![0u8; size];
            let mut n = 0u64;
            while start.elapsed() < duration {
                let mut c = UnixStream::connect(&target).unwrap();
                c.write_all(&buf).unwrap();
                c.read_exact(&mut reply).unwrap();
                n += 1;
            }
            // Wake the accept loop with a connection that sends nothing, so it ends.
            drop(UnixStream::connect(&p));
            let _ = server.join();
            (n, n * 2 * size as u64)
        }
        "loop" => {
            let (mut a, mut b) = UnixStream::pair().expect("socketpair");
            let mut back = vec![0u8; size];
            let slice = Duration::from_millis(50);
            let (mut best_ops, mut best_secs) = (0u64, 1.0f64);
            while start.elapsed() < duration {
                let t = Instant::now();
                let mut n = 0u64;
                while t.elapsed() < slice {
                    for _ in 0..16 {
                        a.write_all(&buf).unwrap();
                        b.read_exact(&mut back).unwrap();
                    }
                    n += 16;
                }
                let secs = t.elapsed().as_secs_f64();
                if n as f64 / secs > best_ops as f64 / best_secs {
                    (best_ops, best_secs) = (n, secs);
                }
            }
            elapsed = Some(best_secs);
            (best_ops, best_ops * size as u64)
        }
        _ => usage(),
    };
    let elapsed = elapsed.unwrap_or_else(|| start.elapsed().as_secs_f64());
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
    // CPU time of the whole workload (all threads, user + system): what tracing costs the
    // traced program, less noisy than its rate on a shared machine.
    let usage = udstrace_tests::sys::getrusage_self().expect("getrusage");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    println!(
        "ops={ops} bytes={bytes} secs={elapsed:.6} cpu={cpu:.6} pid={}",
        std::process::id()
    );
}
