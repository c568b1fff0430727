//! `aer run -- CMD [ARGS...]`: RunExecutable, then behave like the command:
//! its stdout on stdout, its stderr on stderr, its exit code as ours.
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::runtime::{Executable, ExecutableStatus};
use clap::Args;

use super::workload::WorkloadArgs;
use super::Ctx;
use crate::output::{executable_status, print_captured, print_json};
use crate::quote::join_command;

/// Our exit code when the daemon could not start the command, as a shell
/// does for a command it cannot find or execute.
const NOT_STARTED: u8 = 127;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Name of the executable (meta.name), shown in the daemon's logs
    #[arg(long)]
    pub name: Option<String>,
    /// Free-form comment attached to the executable
    #[arg(long)]
    pub comment: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// The command and its arguments (after `--`). Options of `aer run`
    /// go before it: an unknown one there is an error, never the program.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let command = join_command(&args.command);
    let mut executable = Executable {
        meta: Some(AuraeMeta {
            name: args.name.unwrap_or_default(),
            message: String::new(),
        }),
        command: command.clone(),
        comment: args.comment.unwrap_or_default(),
        ..Default::default()
    };
    args.workload.apply(&mut executable);
    let status = ctx
        .client()
        .await?
        .run_executable(executable)
        .await
        .with_context(|| format!("could not run {command}"))?;

    if ctx.json() {
        print_json(&executable_status(&status));
    } else {
        // As returned: the daemon already captured them as text.
        print_captured(&status.stdout, &status.stderr)?;
    }
    let (code, note) = exit_code(&status);
    if let Some(note) = note {
        eprintln!("aer: {note}");
    }
    Ok(ExitCode::from(code))
}

/// Our exit code for `status`, and a note for stderr when there is one.
fn exit_code(status: &ExecutableStatus) -> (u8, Option<String>) {
    let message = status
        .meta
        .as_ref()
        .map(|m| m.message.clone())
        .unwrap_or_default();
    if status.status == Status::Error as i32 {
        let note = if message.is_empty() {
            "the daemon could not run the command".to_string()
        } else {
            message
        };
        return (NOT_STARTED, Some(note));
    }
    match status.exit_code.trim().parse::<i32>() {
        Ok(code) => match u8::try_from(code) {
            Ok(code) => (code, None),
            // Truncating to 8 bits could turn a failure into 0.
            Err(_) => (
                1,
                Some(format!(
                    "the command ended with exit code {code}, outside 0..=255"
                )),
            ),
        },
        Err(_) => (
            1,
            Some(format!(
                "the daemon reported no usable exit code ({:?})",
                status.exit_code
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: Status, exit_code: &str, message: &str) -> ExecutableStatus {
        ExecutableStatus {
            meta: Some(AuraeMeta {
                name: String::new(),
                message: message.into(),
            }),
            status: status as i32,
            exit_code: exit_code.into(),
            ..Default::default()
        }
    }

    #[test]
    fn exit_code_follows_the_command() {
        assert_eq!(
            exit_code(&status(Status::Complete, "0", "exited with code 0")),
            (0, None)
        );
        assert_eq!(exit_code(&status(Status::Complete, "3", "")), (3, None));
        assert_eq!(
            exit_code(&status(Status::Complete, "137", "killed by signal 9")),
            (137, None)
        );
    }

    #[test]
    fn a_command_that_did_not_start_gives_127_and_the_message() {
        let (code, note) = exit_code(&status(Status::Error, "", "no such file: /bin/nope"));
        assert_eq!(code, 127);
        assert_eq!(note.as_deref(), Some("no such file: /bin/nope"));
    }

    #[test]
    fn odd_exit_codes_never_become_success() {
        assert_eq!(exit_code(&status(Status::Complete, "256", "")).0, 1);
        assert_eq!(exit_code(&status(Status::Complete, "-1", "")).0, 1);
        assert_eq!(exit_code(&status(Status::Complete, "", "")).0, 1);
    }
}
