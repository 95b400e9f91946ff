fn main() -> std::process::ExitCode {
    pairsync::app::cli::main()
}
