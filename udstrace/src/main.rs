//! The `udstrace` binary: everything is in the library, starting at `cli::main`.

fn main() -> std::process::ExitCode {
    udstrace::cli::main()
}
