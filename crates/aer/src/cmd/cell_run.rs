//! `aer cell run`: RunCell, with the containers' output live on the
//! terminal and the failing container's exit code as ours, like `docker run`.
//!
//! While RunCell is in flight, cells.Cells/List is polled until every
//! container has a pid; each pid's output is then streamed from the start
//! of its log (the log store keeps everything, so attaching late loses
//! nothing). A container that came and went between two polls is streamed
//! from RunCell's answer. Ctrl-C stops the cell (cells.Cells/Stop) and
//! waits for its end; a second Ctrl-C leaves at once.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use aurae_client::Client;
use aurae_proto::meta::Status;
use aurae_proto::runtime::{Cell, CellStatus, ContainerStatus};
use tokio::signal::unix::{signal, SignalKind};

use super::cell::print_cell_status;
use super::cell_output::Followers;
use super::Ctx;
use crate::output::{cell_status, print_json};

/// How often List is asked for the containers' pids while they start.
const POLL: Duration = Duration::from_millis(100);

/// Our exit code when we leave on a second Ctrl-C, as a shell reports SIGINT.
const INTERRUPTED: u8 = 130;

pub async fn run_cell(ctx: &Ctx, client: &Client, cell: Cell) -> Result<ExitCode> {
    let name = cell.meta.clone().unwrap_or_default().name;
    let names: Vec<String> = cell
        .containers
        .iter()
        .map(|c| c.meta.clone().unwrap_or_default().name)
        .collect();
    // A JSON document on stdout has no room for the containers' output.
    let mut followers = (!ctx.json()).then(|| Followers::new(client.clone(), &names, true));
    let mut interrupts =
        signal(SignalKind::interrupt()).context("could not watch for Ctrl-C (SIGINT)")?;
    let run = client.run_cell(cell);
    tokio::pin!(run);
    let mut poll = tokio::time::interval(POLL);
    let mut stop: Option<tokio::task::JoinHandle<()>> = None;
    let status = loop {
        let attaching = followers
            .as_ref()
            .is_some_and(|f| f.attached() < names.len());
        tokio::select! {
            status = &mut run => break status,
            _ = poll.tick(), if attaching => {
                if let (Some(f), Ok(list)) = (followers.as_mut(), client.list_cells().await) {
                    let running = list.cells.iter().find(|c| c.meta.as_ref().is_some_and(|m| m.name == name));
                    attach_all(f, running.map(|c| c.containers.as_slice()).unwrap_or_default());
                }
            }
            _ = interrupts.recv() => {
                if stop.is_some() {
                    eprintln!("aer: left while cell {name} is stopping; the node finishes stopping it");
                    return Ok(ExitCode::from(INTERRUPTED));
                }
                eprintln!("aer: stopping cell {name} (Ctrl-C again to leave at once)");
                // In a task of its own: Stop answers only once the cell is torn
                // down, and a second Ctrl-C must be heard meanwhile.
                let (client, name) = (client.clone(), name.clone());
                stop = Some(tokio::spawn(async move {
                    if let Err(e) = client.stop_cell(name.clone()).await {
                        eprintln!("aer: could not stop cell {name}: {}", crate::errors::render(&e.into()));
                    }
                }));
            }
        }
    }
    .with_context(|| format!("could not run cell {name}"))?;

    if let Some(f) = followers.as_mut() {
        attach_all(f, &status.container_statuses);
        // Every container has exited and its log is complete: the streams end.
        tokio::select! {
            _ = f.wait() => {}
            _ = interrupts.recv() => return Ok(ExitCode::from(INTERRUPTED)),
        }
    }
    if ctx.json() {
        print_json(&cell_status(&status));
    } else {
        print_cell_status(&status);
    }
    let (code, note) = exit_code(&status);
    if let Some(note) = note {
        eprintln!("aer: cell {name} {note}");
    }
    Ok(ExitCode::from(code))
}

fn attach_all(followers: &mut Followers, containers: &[ContainerStatus]) {
    for c in containers {
        if let (Some(m), Some(p)) = (&c.meta, &c.proc) {
            followers.attach(&m.name, p.pid);
        }
    }
}

/// Our exit code, as `docker run`'s: the first container (in the cell's
/// order) that exited non-zero gives its code; 1 when the cell could not
/// run. The note says why for stderr.
pub(super) fn exit_code(status: &CellStatus) -> (u8, Option<String>) {
    if status.status == Status::Error as i32 {
        let message = status
            .meta
            .as_ref()
            .map(|m| m.message.as_str())
            .unwrap_or_default();
        return (1, Some(format!("failed: {message}")));
    }
    let failed = status
        .container_statuses
        .iter()
        .find_map(|c| c.exit_code.filter(|code| *code != 0).map(|code| (c, code)));
    let Some((c, code)) = failed else {
        return (0, None);
    };
    let container = c.meta.as_ref().map(|m| m.name.as_str()).unwrap_or_default();
    let oom = if c.oom_killed { " (OOM killed)" } else { "" };
    let note = format!("container {container} exited with code {code}{oom}");
    // Truncating to 8 bits could turn a failure into 0.
    (
        u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1),
        Some(note),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurae_proto::meta::AuraeMeta;

    fn container(name: &str, exit_code: Option<i32>) -> ContainerStatus {
        ContainerStatus {
            meta: Some(AuraeMeta {
                name: name.into(),
                message: String::new(),
            }),
            proc: None,
            status: Status::Complete as i32,
            exit_code,
            ..Default::default()
        }
    }

    fn cell(status: Status, containers: Vec<ContainerStatus>) -> CellStatus {
        CellStatus {
            meta: None,
            status: status as i32,
            container_statuses: containers,
            ip: String::new(),
        }
    }

    #[test]
    fn the_first_failing_container_gives_the_exit_code() {
        let ok = cell(Status::Complete, vec![container("a", Some(0))]);
        assert_eq!(exit_code(&ok), (0, None));
        let failed = cell(
            Status::Complete,
            vec![
                container("a", Some(0)),
                container("b", Some(4)),
                container("c", Some(5)),
            ],
        );
        assert_eq!(exit_code(&failed).0, 4);
        assert_eq!(
            exit_code(&failed).1.as_deref(),
            Some("container b exited with code 4")
        );
        let killed = cell(Status::Complete, vec![container("a", Some(143))]);
        assert_eq!(exit_code(&killed).0, 143);
    }

    #[test]
    fn a_cell_that_could_not_run_or_odd_codes_never_give_success() {
        assert_eq!(exit_code(&cell(Status::Error, vec![])).0, 1);
        assert_eq!(
            exit_code(&cell(Status::Complete, vec![container("a", Some(256))])).0,
            1
        );
        assert_eq!(
            exit_code(&cell(Status::Complete, vec![container("a", Some(-1))])).0,
            1
        );
    }
}
