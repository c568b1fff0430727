//! auraed: the daemon binary. Everything lives in the library; this parses
//! the command line, sets up logging and signals, and prints errors whole.

use std::path::PathBuf;
use std::process::ExitCode;

use auraed::config::DaemonConfig;
use auraed::observe::DaemonLog;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "auraed",
    version,
    about = "The Aurae daemon",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: DaemonConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Internal: the monitor of one detached workload (started by the daemon).
    #[command(hide = true)]
    Monitor {
        /// The workload, as JSON.
        spec: String,
    },
    /// Authorization policy: `auraed policy check FILE` checks a policy
    /// against the API this daemon serves, without starting it.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Internal: the helper that runs one container with libcontainer (started by the daemon).
    #[command(hide = true)]
    Container(auraed::cells::helper::HelperArgs),
    /// Internal: the helper that runs one command in a running container (started by the daemon).
    #[command(hide = true)]
    ContainerExec,
    /// Certificates: `auraed pki init` creates a CA, server and client certificates and the client config.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create what is missing (never overwriting without --force).
    Init(PkiInitArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print "ok", or each bad entry (then exit 1).
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct PkiInitArgs {
    /// Server-side directory: CA, server certificate and keys.
    #[arg(long, default_value = auraed::pki::DEFAULT_PKI_DIR)]
    pki_dir: PathBuf,
    /// Client-side directory [default: ~/.aurae/pki].
    #[arg(long)]
    client_dir: Option<PathBuf>,
    /// Identity (CN and SAN) of the client certificate.
    #[arg(long, default_value = auraed::pki::DEFAULT_CLIENT_NAME)]
    client_name: String,
    /// Client config file to write [default: ~/.aurae/config].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Daemon socket written into the client config.
    #[arg(long, default_value = auraed::pki::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Days the server and client certificates are valid.
    #[arg(long, default_value_t = auraed::pki::DEFAULT_VALIDITY_DAYS)]
    days: u32,
    /// Replace existing certificates, keys and config.
    #[arg(long)]
    force: bool,
}

impl PkiInitArgs {
    fn into_options(self) -> auraed::pki::PkiInitOptions {
        let defaults = auraed::pki::PkiInitOptions::default();
        auraed::pki::PkiInitOptions {
            pki_dir: self.pki_dir,
            client_dir: self.client_dir.unwrap_or(defaults.client_dir),
            client_name: self.client_name,
            config_path: self.config.unwrap_or(defaults.config_path),
            socket: self.socket,
            force: self.force,
            validity_days: self.days,
        }
    }
}

fn main() -> ExitCode {
    // The kernel started this binary as init in an instance: its argv is
    // the kernel's leftovers, not a command line (see init/).
    if auraed::init::is_pid1() {
        auraed::init::run();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Monitor { spec }) => {
            return ExitCode::from(auraed::process::monitor::run(&spec) as u8)
        }
        Some(Command::Policy {
            command: PolicyCommand::Check { file },
        }) => return policy_check(&file),
        Some(Command::Container(args)) => {
            return ExitCode::from(auraed::cells::helper::run(&args) as u8)
        }
        Some(Command::ContainerExec) => {
            return ExitCode::from(auraed::cells::exec_helper::run() as u8)
        }
        Some(Command::Pki {
            command: PkiCommand::Init(args),
        }) => auraed::pki::init(&args.into_options())
            .map(|report| println!("{report}"))
            .map_err(anyhow::Error::from),
        None => run_daemon(cli.daemon),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auraed: {}", auraed::error_chain::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn policy_check(file: &std::path::Path) -> ExitCode {
    match aurae_policy::Policy::load(file) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            e.lines().iter().for_each(|l| eprintln!("auraed: {l}"));
            ExitCode::FAILURE
        }
    }
}

fn run_daemon(config: DaemonConfig) -> anyhow::Result<()> {
    auraed::observe::trim::limit_arenas();
    let log = DaemonLog::default();
    let filter = EnvFilter::try_from_env("AURAED_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only for a person at a terminal, never in a file, pipe or journal.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(log.layer())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received");
            signals.cancel();
        });
        auraed::daemon::run(config, log, shutdown)
            .await
            .map_err(anyhow::Error::from)
    });
    // Everything is stopped: do not wait for blocking threads still parked
    // in a read (log followers, the inotify watcher), as dropping would.
    runtime.shutdown_background();
    result
}

async fn wait_for_signal() {
    use auraed::process::listen_for_signal as signal;
    use tokio::signal::unix::SignalKind;
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
