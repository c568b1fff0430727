//! The command line: global options and one subcommand group per file in `cmd/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::output::OutputFormat;

/// Command line client for auraed.
#[derive(Debug, Parser)]
#[command(name = "aer", version, about, propagate_version = true)]
pub struct Cli {
    /// Output format; json prints one JSON document (one per line when following logs)
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Client config [default: $AURAE_CONFIG, else ~/.aurae/config, else /etc/aurae/config]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Talk to the auraed at this TCP address (e.g. a nested instance's,
    /// 10.92.0.2:8080) with the config's identity, instead of its socket
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub address: Option<String>,

    /// Name to verify in the server's certificate [default: with --address,
    /// its host (an instance's certificate names its address too); else the config's]
    #[arg(long, global = true, value_name = "NAME")]
    pub server_name: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the daemon's status
    Status,
    /// Run a command on the node and wait for it: aer run -- CMD [ARGS...]
    Run(cmd::run::RunArgs),
    /// Show daemon or process logs
    #[command(subcommand)]
    Logs(cmd::logs::LogsCommand),
    /// Manage scheduled executables
    #[command(subcommand)]
    Schedule(cmd::schedule::ScheduleCommand),
    /// Run, list and stop cells of containers
    #[command(subcommand)]
    Cell(cmd::cell::CellCommand),
    /// Pull, list, remove and prune OCI images in the node's store
    #[command(subcommand)]
    Image(cmd::image::ImageCommand),
    /// Check an authorization policy file
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Run, list, stop, start and remove virtual machines, follow their console
    #[command(subcommand)]
    Vm(cmd::vm::VmCommand),
    /// Spawn, list and free nested auraed instances
    #[command(subcommand)]
    Instance(cmd::instance::InstanceCommand),
    /// Run pods: cells in a fresh nested instance
    #[command(subcommand)]
    Pod(cmd::pod::PodCommand),
    /// Print a shell completion script
    Completions(cmd::completions::CompletionsArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_everything_after_the_double_dash() {
        let cli = Cli::try_parse_from(["aer", "-o", "json", "run", "--", "sh", "-c", "exit 3"])
            .expect("parses");
        assert_eq!(cli.output, OutputFormat::Json);
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.command, ["sh", "-c", "exit 3"]);
    }

    #[test]
    fn an_unknown_option_before_the_command_is_a_usage_error() {
        let err = Cli::try_parse_from(["aer", "run", "--nme", "x", "--", "true"])
            .expect_err("--nme is not an option of aer run");
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        // The command's own options still pass, with or without `--`.
        for argv in [
            &["aer", "run", "ls", "-la"][..],
            &["aer", "run", "--", "ls", "-la"][..],
            &["aer", "run", "--name", "n", "--", "ls", "-la"][..],
        ] {
            let cli = Cli::try_parse_from(argv).expect("parses");
            let Command::Run(args) = cli.command else {
                panic!("not run")
            };
            assert_eq!(args.command, ["ls", "-la"], "{argv:?}");
        }
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli =
            Cli::try_parse_from(["aer", "status", "--config", "/c", "-o", "json"]).expect("parses");
        assert_eq!(cli.config, Some(PathBuf::from("/c")));
        assert_eq!(cli.output, OutputFormat::Json);
    }

    #[test]
    fn instances_and_pods_parse_with_a_target() {
        let cli = Cli::try_parse_from([
            "aer",
            "--address",
            "10.92.0.2:8080",
            "instance",
            "spawn",
            "--memory",
            "128",
        ])
        .expect("parses");
        assert_eq!(cli.address.as_deref(), Some("10.92.0.2:8080"));
        let Command::Instance(cmd::instance::InstanceCommand::Spawn { name, memory, .. }) =
            cli.command
        else {
            panic!("not instance spawn")
        };
        assert_eq!((name, memory), (None, Some(128)));
        let cli = Cli::try_parse_from(["aer", "pod", "run", "p", "a", "b"]).expect("parses");
        let Command::Pod(cmd::pod::PodCommand::Run { name, images, .. }) = cli.command else {
            panic!("not pod run")
        };
        assert_eq!((name.as_str(), images.len()), ("p", 2));
        let cli = Cli::try_parse_from(["aer", "pod", "run", "p", "a", "-e", "K=v", "--", "ls"])
            .expect("parses");
        let Command::Pod(cmd::pod::PodCommand::Run {
            images, process, ..
        }) = cli.command
        else {
            panic!("not pod run")
        };
        let containers = process.containers(&images).expect("one image");
        assert_eq!(
            (containers[0].env.as_slice(), containers[0].args.as_slice()),
            (&["K=v".to_string()][..], &["ls".to_string()][..])
        );
        assert!(Cli::try_parse_from(["aer", "pod", "run", "p"]).is_err());
        assert!(Cli::try_parse_from(["aer", "instance", "free"]).is_err());
    }

    #[test]
    fn vm_run_takes_a_name_an_image_and_sizes() {
        let cli = Cli::try_parse_from([
            "aer",
            "vm",
            "run",
            "web",
            "http://h/d.qcow2",
            "--memory",
            "256",
            "--vcpus",
            "2",
            "--network",
            "bridge:br0",
        ])
        .expect("parses");
        let Command::Vm(cmd::vm::VmCommand::Run {
            name,
            image,
            memory,
            vcpus,
            network,
        }) = cli.command
        else {
            panic!("not vm run")
        };
        assert_eq!((name.as_str(), image.as_str()), ("web", "http://h/d.qcow2"));
        assert_eq!((memory, vcpus), (Some(256), Some(2)));
        assert_eq!(network, "bridge:br0");
        assert!(
            Cli::try_parse_from(["aer", "vm", "rm"]).is_err(),
            "rm needs a name"
        );
    }
}
