//! A minute of short Unix connections at the machine's full rate under a capture of everything
//! (tests/src/bin/udstrace-soak.rs): udstrace's resident memory stays under 64 MB and flat,
//! its descriptors do not grow, and after it exits none of the BPF programs, links and maps it
//! held (by id: other captures may run on the machine) is left in the kernel.
//! `cargo xtask bench --soak SECONDS` runs the same for longer.

use std::process::Command;

#[test]
fn a_minute_of_short_connections_leaves_memory_flat_and_nothing_behind() {
    let out = Command::new(env!("CARGO_BIN_EXE_udstrace-soak"))
        .arg("60")
        .arg(udstrace_tests::udstrace_bin())
        .output()
        .expect("run udstrace-soak");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the soak failed:\n{text}");
    assert!(text.contains("soak passed"), "{text}");
}
