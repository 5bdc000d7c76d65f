//! The `harbormq` binary: parses the command line and reports failure with a non-zero exit code.

fn main() -> std::process::ExitCode {
    harbormq::cli::main()
}
