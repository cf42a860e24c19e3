fn main() -> std::process::ExitCode {
    udstrace::cli::main()
}
