//! The `focalpoint` command: parse the command line, set up tracing, run the command, and map
//! the outcome to an exit code. Everything it does lives in the library (`focalpoint::cli`).

use std::process::ExitCode;

use clap::Parser;
use focalpoint::cli::commands::{self, Cli, exit};

#[global_allocator]
static ALLOCATOR: focalpoint::node::allocator::Allocator = focalpoint::node::allocator::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_tracing(&cli.command);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        // `focalpoint log | head -1`: the reader has what it wanted.
        Err(e) if commands::is_broken_pipe(&e) => {
            ExitCode::from(focalpoint::cli::output::READER_GONE)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(commands::exit_code(&e))
        }
    }
}
