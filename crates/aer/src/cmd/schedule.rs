//! `aer schedule enable|disable|destroy|list`: the schedule registry.
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_proto::meta::AuraeMeta;
use aurae_proto::runtime::Executable;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::workload::{settings_text, WorkloadArgs};
use super::Ctx;
use crate::output::{executable, meta, meta_text, print_json};
use crate::quote::join_command;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Register (or re-enable) an executable: aer schedule enable NAME -- CMD [ARGS...]
    Enable {
        name: String,
        /// Free-form comment attached to the executable
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        workload: WorkloadArgs,
        /// The command and its arguments (after `--`)
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Disable an enabled executable, keeping it registered
    Disable { name: String },
    /// Remove an executable from the schedule
    Destroy { name: String },
    /// List scheduled executables (both states unless one is asked for)
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only enabled executables
    #[arg(long, conflicts_with = "disabled")]
    pub enabled: bool,
    /// Only disabled executables
    #[arg(long)]
    pub disabled: bool,
}

pub async fn run(ctx: &Ctx, cmd: ScheduleCommand) -> Result<ExitCode> {
    let client = ctx.client().await?;
    let (verb, name, response_meta) = match cmd {
        ScheduleCommand::Enable {
            name,
            comment,
            workload,
            command,
        } => {
            let mut exe = named(&name, join_command(&command), comment.unwrap_or_default());
            workload.apply(&mut exe);
            let r = client
                .enable(exe)
                .await
                .with_context(|| format!("could not enable {name}"))?;
            ("enabled", name, r.meta)
        }
        ScheduleCommand::Disable { name } => {
            let r = client
                .disable(named(&name, String::new(), String::new()))
                .await;
            (
                "disabled",
                name.clone(),
                r.with_context(|| format!("could not disable {name}"))?.meta,
            )
        }
        ScheduleCommand::Destroy { name } => {
            let r = client
                .destroy(named(&name, String::new(), String::new()))
                .await;
            (
                "destroyed",
                name.clone(),
                r.with_context(|| format!("could not destroy {name}"))?.meta,
            )
        }
        ScheduleCommand::List(args) => {
            let want_enabled = !args.disabled;
            let want_disabled = !args.enabled;
            let enabled = match want_enabled {
                true => Some(
                    client
                        .show_enabled()
                        .await
                        .context("could not list enabled executables")?
                        .executables,
                ),
                false => None,
            };
            let disabled = match want_disabled {
                true => Some(
                    client
                        .show_disabled()
                        .await
                        .context("could not list disabled executables")?
                        .executables,
                ),
                false => None,
            };
            print_list(ctx, enabled.as_deref(), disabled.as_deref());
            return Ok(ExitCode::SUCCESS);
        }
    };
    if ctx.json() {
        print_json(&json!({ "meta": meta(response_meta.as_ref()) }));
    } else {
        let text = meta_text(response_meta.as_ref());
        println!(
            "{}",
            if text.is_empty() {
                format!("{verb} {name}")
            } else {
                text
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Enable needs the whole executable; disable and destroy only its name.
fn named(name: &str, command: String, comment: String) -> Executable {
    Executable {
        meta: Some(AuraeMeta {
            name: name.to_string(),
            message: String::new(),
        }),
        command,
        comment,
        ..Default::default()
    }
}

fn print_list(ctx: &Ctx, enabled: Option<&[Executable]>, disabled: Option<&[Executable]>) {
    if ctx.json() {
        print_json(&list_json(enabled, disabled));
    } else {
        print!("{}", list_table(enabled, disabled));
    }
}

/// The text table of `aer schedule list`, one line per executable.
fn list_table(enabled: Option<&[Executable]>, disabled: Option<&[Executable]>) -> String {
    let rows: Vec<(&str, &Executable)> = [("enabled", enabled), ("disabled", disabled)]
        .into_iter()
        .flat_map(|(state, list)| list.unwrap_or_default().iter().map(move |e| (state, e)))
        .collect();
    let name = |e: &Executable| e.meta.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let width = rows
        .iter()
        .map(|(_, e)| name(e).len())
        .max()
        .unwrap_or(0)
        .max(4);
    let message = |e: &Executable| {
        e.meta
            .as_ref()
            .map(|m| m.message.clone())
            .unwrap_or_default()
    };
    let exits: Vec<String> = rows.iter().map(|(_, e)| last_exit(&message(e))).collect();
    let exit_width = exits.iter().map(String::len).max().unwrap_or(0).max(9);
    let mut out = format!(
        "{:<8}  {:<width$}  {:<15}  {:>7}  {:>8}  {:<exit_width$}  COMMAND\n",
        "STATE", "NAME", "STATUS", "PID", "RESTARTS", "LAST EXIT"
    );
    for ((state, e), exit) in rows.into_iter().zip(exits) {
        let message = message(e);
        let field = |key: &str| status_field(&message, key).unwrap_or("-").to_string();
        let settings = settings_text(e);
        let settings = if settings.is_empty() {
            settings
        } else {
            format!("  [{settings}]")
        };
        out.push_str(&format!(
            "{state:<8}  {:<width$}  {:<15}  {:>7}  {:>8}  {exit:<exit_width$}  {}{settings}\n",
            name(e),
            field("status").trim_start_matches("STATUS_"),
            field("pid"),
            field("restarts"),
            e.command
        ));
    }
    out
}

/// The LAST EXIT column: how the last process ended, and why the
/// supervisor gave up when it did (`error=`), or `-` when it never ran.
fn last_exit(message: &str) -> String {
    let exit = quoted_field(message, "last_exit").filter(|s| !s.is_empty());
    match (exit, quoted_field(message, "error")) {
        (_, Some(error)) => error,
        (Some(exit), None) => exit,
        (None, None) => "-".into(),
    }
}

/// The value of `key="..."` in the status line; the daemon writes it with
/// Rust's string escapes (`\"`, `\\`, `\n`, ...).
fn quoted_field(message: &str, key: &str) -> Option<String> {
    let pattern = format!("{key}=\"");
    let start = message
        .match_indices(&pattern)
        .find(|(i, _)| *i == 0 || message[..*i].ends_with(' '))
        .map(|(i, _)| i + pattern.len())?;
    let mut out = String::new();
    let mut chars = message[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push(' '),
                't' => out.push(' '),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The value of `key` in the daemon's status line (`status=STATUS_ACTIVE pid=12 ...`);
/// only unquoted values, which are the ones shown in the table.
fn status_field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// `{"enabled": [...], "disabled": [...]}` with only the lists asked for.
fn list_json(enabled: Option<&[Executable]>, disabled: Option<&[Executable]>) -> Value {
    let mut out = Map::new();
    for (key, list) in [("enabled", enabled), ("disabled", disabled)] {
        if let Some(list) = list {
            out.insert(
                key.into(),
                Value::Array(list.iter().map(executable).collect()),
            );
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_from_the_status_line() {
        let m = "status=STATUS_ACTIVE pid=1234 restarts=2 last_exit=\"exited with code 1\"";
        assert_eq!(status_field(m, "status"), Some("STATUS_ACTIVE"));
        assert_eq!(status_field(m, "pid"), Some("1234"));
        assert_eq!(status_field(m, "restarts"), Some("2"));
        assert_eq!(status_field(m, "nope"), None);
    }

    #[test]
    fn the_last_exit_column_shows_the_exit_or_why_the_supervisor_gave_up() {
        assert_eq!(
            last_exit(r#"status=STATUS_ACTIVE pid=1234 restarts=2 last_exit="exited with code 1""#),
            "exited with code 1"
        );
        assert_eq!(
            last_exit(
                r#"status=STATUS_ERROR pid=0 restarts=4 last_exit="exited with code 1" error="start limit hit: could not start \"x\"""#
            ),
            r#"start limit hit: could not start "x""#
        );
        assert_eq!(
            last_exit(r#"status=STATUS_ACTIVE pid=1 restarts=0 last_exit="""#),
            "-"
        );
    }

    #[test]
    fn the_table_has_a_last_exit_column() {
        let mut failing = named("flaky", "false".into(), String::new());
        if let Some(m) = failing.meta.as_mut() {
            m.message = r#"status=STATUS_ERROR pid=0 restarts=4 last_exit="exited with code 1" error="start limit hit: 5 starts within 10s; last exit: exited with code 1""#.into();
        }
        let table = list_table(Some(std::slice::from_ref(&failing)), Some(&[]));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("RESTARTS  LAST EXIT"), "{table}");
        assert!(
            lines[1].contains("ERROR")
                && lines[1].contains(
                    "start limit hit: 5 starts within 10s; last exit: exited with code 1  false"
                ),
            "{table}"
        );
    }

    #[test]
    fn list_json_has_only_the_asked_lists() {
        let e = named("job", "sleep 1".into(), String::new());
        let v = list_json(Some(std::slice::from_ref(&e)), None);
        assert_eq!(
            v,
            json!({"enabled": [{"meta": {"name": "job", "message": ""}, "command": "sleep 1", "comment": "", "user": "", "group": "", "limits": null}]})
        );
        assert_eq!(
            list_json(Some(&[]), Some(&[])),
            json!({"enabled": [], "disabled": []})
        );
    }
}
