//! One file per subcommand group; each turns its arguments into calls on
//! `aurae_client::Client` and prints the answer as text or JSON.

pub mod cell;
pub mod cell_exec;
pub mod cell_output;
pub mod cell_run;
pub mod completions;
pub mod image;
pub mod instance;
pub mod logs;
pub mod pod;
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
    address: Option<String>,
    server_name: Option<String>,
}

impl Ctx {
    /// Connects with `--config`, or the first config found. Only commands
    /// that talk to the daemon call this, so `aer completions` works
    /// without any config.
    pub async fn client(&self) -> Result<Client> {
        let mut config = match &self.config {
            Some(path) => AuraeConfig::from_path(path)?,
            None => AuraeConfig::from_default_locations()?,
        };
        retarget(
            &mut config,
            self.address.as_deref(),
            self.server_name.as_deref(),
        );
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
        address: cli.address,
        server_name: cli.server_name,
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
        Command::Instance(cmd) => instance::run(&ctx, cmd).await,
        Command::Pod(cmd) => pod::run(&ctx, cmd).await,
        Command::Completions(args) => completions::run(args),
    }
}

/// `--address` replaces the config's socket or address; the name verified
/// is `--server-name`, else the address's host (a nested instance's
/// certificate names its address), else the config's.
fn retarget(config: &mut AuraeConfig, address: Option<&str>, server_name: Option<&str>) {
    if let Some(address) = address {
        config.system.socket = None;
        config.system.address = Some(address.to_string());
        config.system.server_name = Some(host_of(address).to_string());
    }
    if let Some(name) = server_name {
        config.system.server_name = Some(name.to_string());
    }
}

/// The host of `host:port`, `[v6]:port` or a bare host.
fn host_of(address: &str) -> &str {
    let a = address.split_once("://").map_or(address, |(_, rest)| rest);
    if let Some(v6) = a.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    a.rsplit_once(':').map_or(a, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_retargets_the_config_and_names_the_server() {
        let mut c = AuraeConfig::parse(
            "[auth]\nca_crt = \"/a\"\nclient_crt = \"/b\"\nclient_key = \"/c\"\n[system]\nsocket = \"/s\"\n",
        )
        .expect("config");
        retarget(&mut c, Some("10.92.0.2:8080"), None);
        assert_eq!(c.system.socket, None);
        assert_eq!(c.system.address.as_deref(), Some("10.92.0.2:8080"));
        assert_eq!(c.system.server_name(), "10.92.0.2");
        retarget(&mut c, None, Some("web"));
        assert_eq!(c.system.server_name(), "web");
        assert_eq!(host_of("[::1]:8080"), "::1");
        assert_eq!(host_of("https://h:1"), "h");
    }
}
