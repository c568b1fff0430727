//! One file per subcommand group; each turns its arguments into calls on
//! `aurae_client::Client` and prints the answer as text or JSON.

pub mod cell;
pub mod cell_exec;
pub mod cell_output;
pub mod cell_run;
pub mod completions;
pub mod image;
pub mod logs;
pub mod policy;
pub mod run;
pub mod schedule;
pub mod status;
pub mod vm;
pub mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use aurae_client::{AuraeConfig, Client};

use crate::cli::{Cli, Command};
use crate::output::OutputFormat;

/// What every command may need: the output format and a way to connect.
pub struct Ctx {
    pub output: OutputFormat,
    config: Option<PathBuf>,
}

impl Ctx {
    /// Connects with `--config`, or the first config found. Only commands
    /// that talk to the daemon call this, so `aer completions` works
    /// without any config.
    pub async fn client(&self) -> Result<Client> {
        let config = match &self.config {
            Some(path) => AuraeConfig::from_path(path)?,
            None => AuraeConfig::from_default_locations()?,
        };
        Ok(Client::connect(&config).await?)
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        output: cli.output,
        config: cli.config,
    };
    match cli.command {
        Command::Status => status::run(&ctx).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Logs(cmd) => logs::run(&ctx, cmd).await,
        Command::Schedule(cmd) => schedule::run(&ctx, cmd).await,
        Command::Cell(cmd) => cell::run(&ctx, cmd).await,
        Command::Image(cmd) => image::run(&ctx, cmd).await,
        Command::Policy(cmd) => policy::run(cmd),
        Command::Vm(cmd) => vm::run(&ctx, cmd).await,
        Command::Completions(args) => completions::run(args),
    }
}
