//! The `lookout` binary: everything lives in the library; this only hands over to its CLI.

#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

fn main() -> std::process::ExitCode {
    lookout::cli::main()
}
