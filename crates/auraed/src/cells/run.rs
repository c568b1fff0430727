//! RunCell as a composition of the split operations (`ops`), on a record
//! marked `bound` to the call: record, sandbox create, container create and
//! start of every container, wait, remove; then the answer, from the
//! containers as List shows them.
//!
//! The cell ends with its call: Stop, a dropped call (cancel, deadline) and
//! the daemon's shutdown cancel its stop token, and the removal always
//! runs. A daemon killed meanwhile leaves the bound record; the next daemon
//! removes the cell (`detached::adopt_all`) and never adopts it.

use std::sync::Arc;
use std::time::Instant;

use super::core::{CellResult, ContainerResult, ContainerView, Entry, Inner, Phase, Reservation};
use super::error::CellError;
use super::image::PulledImage;
use super::ops::{ms, CellOps, StartFailure, Waited};
use super::request::CellRequest;
use crate::error_chain::chain;
use crate::workload::Status as MetaStatus;

/// The cell task: runs the cell and always removes it.
pub(crate) async fn run(
    inner: Arc<Inner>,
    reservation: Reservation,
    req: CellRequest,
    pulled: Vec<PulledImage>,
) -> Result<CellResult, CellError> {
    let entry = reservation.entry.clone();
    let mut cell = CellOps::record(&inner, entry.clone(), &req, true).await?;
    // Dropped before the reservation: a panic still removes the cell
    // before its name is given back.
    let mut unwound = Unwound {
        inner: inner.clone(),
        name: req.name.clone(),
        armed: true,
    };
    let began = Instant::now();
    let result = match cell.create_sandbox(&req, pulled).await {
        Ok(()) => {
            let set_up = began.elapsed();
            let started = cell.create_and_start().await;
            if started.is_ok() {
                tracing::info!(cell = %req.name, containers = req.containers.len(), setup_ms = ms(set_up), start_ms = ms(began.elapsed() - set_up), "cell started");
            }
            run_started(&mut cell, &req, started).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = cell.remove().await {
        tracing::error!(cell = %req.name, error = %chain(&e), "tearing the cell down; the next daemon start retries");
    }
    unwound.armed = false;
    drop(reservation);
    result
}

/// Waits for the containers of a started cell; the answer for one that
/// could not start.
async fn run_started(
    cell: &mut CellOps,
    req: &CellRequest,
    started: Result<(), StartFailure>,
) -> Result<CellResult, CellError> {
    let entry = cell.entry.clone();
    match started {
        Ok(()) => {
            if !entry.stop.is_cancelled() {
                entry.set_phase(Phase::Running);
            }
            let stopped = cell.wait().await == Waited::Stopped;
            Ok(answer(&entry, None, stopped))
        }
        Err(StartFailure::Stopped) => {
            let why = "the cell was stopped before it started";
            not_started(&entry, why);
            Ok(answer(&entry, Some(why.to_string()), false))
        }
        Err(StartFailure::Container { index, why }) => {
            let name = &req.containers[index].name;
            tracing::warn!(cell = %req.name, container = %name, error = %why, "container could not start");
            entry.update(index, |v| {
                v.status = MetaStatus::Error;
                v.message = format!("could not start: {why}");
            });
            not_started(&entry, &format!("container {name:?} could not start"));
            Ok(answer(
                &entry,
                Some(format!("container {name:?} could not start: {why}")),
                false,
            ))
        }
        Err(StartFailure::Record(e)) => Err(e),
    }
}

/// Marks every container that did not fail and never ran as not started.
fn not_started(entry: &Entry, why: &str) {
    for (i, v) in entry.views().iter().enumerate() {
        if v.status != MetaStatus::Error && v.exit_code.is_none() {
            entry.update(i, |v| {
                v.status = MetaStatus::Error;
                v.message = format!("not started: {why}");
            });
        }
    }
}

/// The call's answer, from every container as List shows it.
fn answer(entry: &Entry, failure: Option<String>, stopped: bool) -> CellResult {
    let containers: Vec<_> = entry.views().iter().map(ContainerView::to_result).collect();
    let (status, message) = summary(&containers, failure, stopped);
    CellResult {
        name: entry.name.clone(),
        message,
        status,
        containers,
        ip: entry.ip(),
    }
}

/// The cell's status and `meta.message`: the failure, else one part per
/// container (`a exited with code 0, b exited with code 3`).
fn summary(
    containers: &[ContainerResult],
    failure: Option<String>,
    stopped: bool,
) -> (MetaStatus, String) {
    let each = containers
        .iter()
        .map(|c| format!("{} {}", c.name, c.message))
        .collect::<Vec<_>>()
        .join(", ");
    match failure {
        Some(why) => (MetaStatus::Error, why),
        None if stopped => (MetaStatus::Complete, format!("stopped on request: {each}")),
        None => (MetaStatus::Complete, each),
    }
}

/// Only armed when the cell task unwinds (a panic) before its removal:
/// removes every trace of the cell, blocking, as the next start would.
struct Unwound {
    inner: Arc<Inner>,
    name: String,
    armed: bool,
}

impl Drop for Unwound {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        tracing::error!(cell = %self.name, "cell task ended without its removal: cleaning up");
        if let Err(e) = self.inner.reclaim(&self.name) {
            tracing::error!(cell = %self.name, error = %chain(&e), "removing the cell");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Limits;

    fn container(name: &str, message: &str) -> ContainerResult {
        ContainerResult {
            name: name.into(),
            message: message.into(),
            pid: Some(7),
            status: MetaStatus::Complete,
            exit_code: Some(0),
            limits: Limits::default(),
            oom_killed: false,
        }
    }

    #[test]
    fn the_answer_names_each_container_or_the_failure() {
        let both = [
            container("a", "exited with code 0"),
            container("b", "exited with code 3"),
        ];
        assert_eq!(
            summary(&both, None, false),
            (
                MetaStatus::Complete,
                "a exited with code 0, b exited with code 3".to_string()
            )
        );
        assert_eq!(
            summary(&both[..1], None, true),
            (
                MetaStatus::Complete,
                "stopped on request: a exited with code 0".to_string()
            )
        );
        let why = "container \"b\" could not start: no such file".to_string();
        assert_eq!(
            summary(&both, Some(why.clone()), false),
            (MetaStatus::Error, why)
        );
    }
}
