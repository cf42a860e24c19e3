//! Project tasks: `cargo xtask setup | test | demo | bench | vm-test | image | deb | cross`.

mod bench;
mod cross;
mod deb;
mod demo;
mod image;
mod setup;
mod test;
mod util;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "udstrace's development tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything a fresh Debian 12 machine lacks to build and test udstrace (as root).
    Setup,
    /// Run the whole test suite: formatting, lints, unit tests, the integration tests that
    /// load the real programs, then the kernel matrix (vm-test) (as root).
    Test {
        /// Skip the kernel matrix (a quicker loop while developing; CI runs everything).
        #[arg(long)]
        no_vm: bool,
    },
    /// Capture a real conversation (curl talking HTTP to a server on a Unix socket) and show it.
    Demo,
    /// Measure what udstrace costs traced programs and what it keeps; writes docs/BENCHMARKS.md.
    Bench {
        /// Instead, a soak of SECONDS: short connections at full rate, udstrace's memory and
        /// descriptors sampled every second, its BPF objects looked for after it exits.
        #[arg(long, value_name = "SECONDS")]
        soak: Option<u64>,
    },
    /// Run the capture tests on Debian's 5.10, 6.1 and 6.12 kernels under QEMU and on the host,
    /// once per attach backend each kernel supports; print a kernel x backend table (as root).
    VmTest(vm::Options),
    /// Build udstrace's container image (udstrace:VERSION and udstrace:latest) with docker:
    /// the release binary and the libraries it loads, nothing else.
    Image(image::Options),
    /// Build the Debian package (target/deb/udstrace_VERSION_ARCH.deb) from the release
    /// binary: the binary, manual page, completions, systemd unit, Wireshark's Lua plugin and
    /// extcap link.
    Deb(deb::Options),
    /// Build udstrace for another architecture (arm64: target/aarch64-unknown-linux-gnu/
    /// release/udstrace), with the same kernel programs.
    Cross(cross::Options),
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test { no_vm } => test::run(no_vm),
        Command::Demo => demo::run(),
        Command::Bench { soak: None } => bench::run(),
        Command::Bench {
            soak: Some(seconds),
        } => bench::soak(seconds),
        Command::VmTest(options) => vm::run(&options),
        Command::Image(options) => image::run(&options),
        Command::Deb(options) => deb::run(&options),
        Command::Cross(options) => cross::run(&options),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
