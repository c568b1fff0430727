//! `aer policy check FILE`: checks an authorization policy against the API
//! this aer was built for, before it is deployed (no daemon needed).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print "ok", or each bad entry (then exit 1)
    Check {
        /// The policy file (TOML)
        file: PathBuf,
    },
}

pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    let PolicyCommand::Check { file } = cmd;
    match aurae_policy::Policy::load(&file) {
        Ok(_) => {
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            e.lines().iter().for_each(|l| eprintln!("aer: {l}"));
            Ok(ExitCode::FAILURE)
        }
    }
}
