//! `aer completions SHELL`: the script goes to stdout, e.g.
//! `aer completions bash > /etc/bash_completion.d/aer`.
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Always a script, whatever `-o` says: it is meant for the shell.
pub fn run(args: CompletionsArgs) -> Result<ExitCode> {
    // Into memory first: clap_complete panics when its writer fails, and
    // `aer completions bash | head` closes the pipe early.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "aer", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
