//! `aer cell exec CELL CONTAINER -- CMD...`: cells.Cells/Exec, then behave
//! like the command: its stdout on stdout, its stderr on stderr, its exit
//! code as ours.
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_client::Client;
use aurae_proto::cells::ExecRequest;
use clap::Args;
use serde_json::json;

use super::Ctx;
use crate::output::{print_captured, print_json, proc};
use crate::quote::join_command;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Cell name
    pub cell: String,
    /// Container name
    pub container: String,
    /// Kill the command after this many seconds (0: no limit)
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub timeout: u32,
    /// The command and its arguments (after `--`)
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub async fn exec(ctx: &Ctx, client: &Client, args: ExecArgs) -> Result<ExitCode> {
    let command = join_command(&args.command);
    let r = client
        .exec_in_cell(ExecRequest {
            cell: args.cell.clone(),
            container: args.container.clone(),
            command: command.clone(),
            timeout_seconds: args.timeout,
        })
        .await
        .with_context(|| {
            format!(
                "could not run {command} in container {} of cell {}",
                args.container, args.cell
            )
        })?;
    if ctx.json() {
        print_json(&json!({
            "exit_code": r.exit_code,
            "stdout": r.stdout,
            "stderr": r.stderr,
            "proc": proc(r.proc.as_ref()),
            "timed_out": r.timed_out,
        }));
    } else {
        print_captured(&r.stdout, &r.stderr)?;
    }
    if r.timed_out {
        eprintln!("aer: {command} was killed after {}s", args.timeout);
    }
    // Truncating to 8 bits could turn a failure into 0.
    let code = u8::try_from(r.exit_code).unwrap_or(1);
    Ok(ExitCode::from(code))
}
