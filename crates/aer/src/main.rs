//! aer: the command line client for auraed, a thin layer over aurae-client.
//!
//! Exit codes: 0 on success; for `aer run`, the command's own code (127 when
//! it could not be started); 1 when aer itself fails (config, connection,
//! an error status from the daemon); 2 for usage errors.

mod cli;
mod cmd;
mod errors;
mod output;
mod quote;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aer: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("aer: {}", errors::render(&err));
            ExitCode::FAILURE
        }
    }
}
