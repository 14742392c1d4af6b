//! The `switchyard` binary: see the `switchyard` library for what each part does.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    switchyard::execute(switchyard::cli::Cli::parse())
}
