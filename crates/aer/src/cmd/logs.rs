//! `aer logs daemon [-n N] [-f]` and `aer logs pid PID [--stderr] [-f]`.
//!
//! Both read the daemon's log store: without `-f` they print what is kept
//! and stop (like `journalctl -u` and `kubectl logs`); with `-f` they go on
//! following until the stream ends or Ctrl-C.
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_proto::observe::{LogChannelType, LogItem};
use clap::{Args, Subcommand};
use serde_json::json;
use tonic::Streaming;

use super::Ctx;
use crate::output::{log_item, print_json};

#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// The daemon's own log records (an audit trail of workloads and refused calls)
    Daemon {
        /// How many of the most recent records to show first
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u32,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Output of a process the daemon started
    Pid {
        /// Process id, as in `aer run -o json` (proc.pid) or `aer cell list`
        pid: i64,
        /// Show stderr instead of stdout
        #[arg(long)]
        stderr: bool,
        #[command(flatten)]
        follow: FollowArgs,
    },
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Keep printing new output until the stream ends or Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
}

pub async fn run(ctx: &Ctx, cmd: LogsCommand) -> Result<ExitCode> {
    let client = ctx.client().await?;
    let (stream, follow) = match cmd {
        LogsCommand::Daemon { lines, follow } => (
            client
                .daemon_log(lines, !follow.follow)
                .await
                .context("could not open the daemon log stream")?,
            follow.follow,
        ),
        LogsCommand::Pid {
            pid,
            stderr,
            follow,
        } => {
            let channel = if stderr {
                LogChannelType::ChannelStderr
            } else {
                LogChannelType::ChannelStdout
            };
            let stream = client
                .sub_process_output(pid, channel, !follow.follow)
                .await
                .with_context(|| format!("could not open the output stream of pid {pid}"))?;
            (stream, follow.follow)
        }
    };
    if follow {
        follow_stream(ctx, stream).await?;
    } else {
        read_all(ctx, stream).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints each record as it comes (JSON: one object per line).
pub(crate) async fn follow_stream(ctx: &Ctx, mut stream: Streaming<LogItem>) -> Result<()> {
    loop {
        let item = tokio::select! {
            item = stream.message() => item.context("the log stream failed")?,
            // Ctrl-C is how one stops following: not an error.
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(item) = item else { return Ok(()) };
        let line = if ctx.json() {
            log_item(&item).to_string()
        } else {
            text_line(&item).to_string()
        };
        match writeln!(std::io::stdout(), "{line}") {
            // The reader went away (`aer logs daemon -f | head`): we are done.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.context("could not write to stdout")?,
        }
    }
}

/// Reads the stream to its end (what the daemon keeps now). Text is printed
/// as it comes; JSON is one document, `{"items": [...]}`, printed at the end.
async fn read_all(ctx: &Ctx, mut stream: Streaming<LogItem>) -> Result<()> {
    let mut items = Vec::new();
    loop {
        let item = tokio::select! {
            item = stream.message() => item.context("the log stream failed")?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(item) = item else { break };
        if ctx.json() {
            items.push(log_item(&item));
        } else {
            println!("{}", text_line(&item));
        }
    }
    if ctx.json() {
        print_json(&json!({ "items": items }));
    }
    Ok(())
}

/// The record's line without its own newline, if it has one.
fn text_line(item: &LogItem) -> &str {
    item.line.strip_suffix('\n').unwrap_or(&item.line)
}
