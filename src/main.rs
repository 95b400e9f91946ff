fn main() -> std::process::ExitCode {
    pairsync::cli::main()
}
