//! Detached cells (`cells.Cells/Start`, `aer cell start`): cells that
//! outlive their call and the daemon, until `cells.Cells/Remove`.
//!
//! Start, Stop and Remove are compositions of the split operations on the
//! cell's record (`ops`), in the order the Kubernetes CRI calls them:
//! Start is record, sandbox create, container create and start, then a
//! watcher (container wait) in the background, which releases the cell's
//! network once its containers have all exited (StopPodSandbox); Stop
//! cancels the watcher's token; Remove is remove. A start that fails half-way removes everything it made. Each
//! container's helper works like `auraed monitor` once the container runs,
//! so a restarted daemon adopts the containers from their records
//! ([`adopt_all`]) and learns how those that ended while it was down ended.

use std::sync::Arc;

use super::core::{CellResult, ContainerView, Entry, Inner, Phase, Reservation};
use super::error::CellError;
use super::image::PulledImage;
use super::ops::{self, CellOps, Waited};
use super::request::{self, CellRequest, CellSpec};
use super::setup;
use super::store::{self, CellRecord, CellState, CELLS};
use crate::error_chain::chain;
use crate::process::Adopted;
use crate::state::StateDb;
use crate::workload::Status as MetaStatus;

/// Starts `cell` detached; answers once every container has started.
pub(crate) async fn start(inner: &Arc<Inner>, cell: CellSpec) -> Result<CellResult, CellError> {
    inner.state()?;
    let req = request::validate(&cell, inner.processes.defaults().limits)?;
    inner.check_limits(&req)?;
    let reservation = inner.reserve(&req, true)?;
    let pulled = inner.pull_all(&req).await?;
    setup::check_runnable(&req, &pulled)?;
    let cell = CellOps::record(inner, reservation.entry.clone(), &req, false).await?;
    // A task of its own: a dropped call must not leave a half-made cell.
    let task = tokio::spawn(bring_up(cell, reservation, req, pulled));
    task.await.map_err(|e| CellError::Task(e.to_string()))?
}

/// Sandbox, containers created and started; on failure, everything removed.
async fn bring_up(
    mut cell: CellOps,
    reservation: Reservation,
    req: CellRequest,
    pulled: Vec<PulledImage>,
) -> Result<CellResult, CellError> {
    let made = match cell.create_sandbox(&req, pulled).await {
        Ok(()) => cell
            .create_and_start()
            .await
            .map_err(|f| f.into_error(&req)),
        Err(e) => Err(e),
    };
    if let Err(e) = made {
        tracing::warn!(cell = %req.name, error = %chain(&e), "the cell could not start: removing it");
        if let Err(e) = cell.remove().await {
            tracing::error!(cell = %req.name, error = %chain(&e), "removing the cell; the next start retries");
        }
        return Err(e);
    }
    let entry = reservation.keep();
    entry.set_phase(Phase::Running);
    tracing::info!(cell = %req.name, containers = req.containers.len(), "detached cell started");
    let result = CellResult {
        name: req.name.clone(),
        message: "started".to_string(),
        status: MetaStatus::Active,
        containers: entry.views().iter().map(ContainerView::to_result).collect(),
        ip: entry.ip(),
    };
    tokio::spawn(watch(cell));
    Ok(result)
}

/// Container wait in the background until every container has exited;
/// nothing when the daemon leaves the cell running.
async fn watch(mut cell: CellOps) {
    if cell.wait().await == Waited::Abandoned {
        return;
    }
    settle(&cell.inner, &cell.db, &cell.entry, &mut cell.record).await;
}

/// Every container has exited (or was stopped): the cell's network is
/// released (CNI DEL, as StopPodSandbox), and the cell is PASSIVE, without
/// an address, until removed; Remove's own DEL then has nothing left to do.
async fn settle(inner: &Arc<Inner>, db: &Arc<StateDb>, entry: &Entry, record: &mut CellRecord) {
    let (i, name) = (inner.clone(), entry.name.clone());
    if let Err(e) = tokio::task::spawn_blocking(move || super::network::disconnect(&i, &name)).await
    {
        tracing::error!(cell = %entry.name, error = %e, "releasing the cell's network");
    }
    entry.set_ip(None);
    record.ip = None;
    record.state = CellState::Stopped;
    if let Err(e) = store::put(db, &entry.name, record).await {
        tracing::error!(cell = %entry.name, error = %chain(&e), "recording the cell's end");
    }
    entry.set_phase(Phase::Stopped);
    entry.idle.send_replace(true);
    tracing::info!(cell = %entry.name, "detached cell stopped: its containers have all exited, its network is released");
}

/// Removes cell `name`: stops it first when `force`, refuses a running one
/// otherwise. Serialised with every other Stop and Remove of the same cell.
pub(crate) async fn remove(
    inner: &Arc<Inner>,
    name: &str,
    force: bool,
) -> Result<String, CellError> {
    let entry = inner.entry(name).ok_or_else(|| CellError::NotFound {
        cell: name.to_string(),
    })?;
    if !entry.detached {
        return Err(CellError::BoundToCall {
            cell: name.to_string(),
        });
    }
    let db = inner.state()?;
    let _serial = entry.serial.lock().await;
    if entry.released() {
        // Removed by a concurrent Remove (or its start failed) while this
        // call waited: there is nothing of it left.
        return Err(CellError::NotFound {
            cell: name.to_string(),
        });
    }
    if entry.phase() != Phase::Stopped {
        if !force {
            return Err(CellError::StillRunning {
                cell: name.to_string(),
            });
        }
        tracing::info!(cell = name, "stopping the cell to remove it");
        ops::stop(&entry).await;
    }
    if entry.released() {
        // A start that failed meanwhile removed everything itself.
        return Ok("removed".to_string());
    }
    ops::remove(inner, &db, name, Vec::new()).await?;
    inner.release(&entry);
    tracing::info!(cell = name, "detached cell removed");
    Ok("removed".to_string())
}

/// Takes back the detached cells an earlier daemon recorded: running
/// containers are supervised again (same pids, output still reaching their
/// logs), exits that happened while no daemon watched are recorded, and a
/// start the daemon did not finish is removed, as is every cell bound to a
/// RunCell call (its caller is gone).
pub(crate) async fn adopt_all(inner: &Arc<Inner>) {
    let Ok(db) = inner.state() else {
        return;
    };
    let records = match store::with_db(&db, "*", |db| db.all(&CELLS)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %chain(&e), "reading the detached cells: none adopted");
            return;
        }
    };
    for (name, record) in records {
        if crate::validation::validate_name("cell", &name).is_err() {
            tracing::warn!(cell = %name, "ignoring a record with an invalid name");
            continue;
        }
        if record.bound || record.state == CellState::Creating {
            tracing::info!(cell = %name, bound = record.bound, "removing a cell whose call or start the previous daemon did not finish");
            if let Err(e) = ops::remove(inner, &db, &name, Vec::new()).await {
                tracing::warn!(cell = %name, error = %chain(&e), "removing a cell; the next start retries");
            }
            continue;
        }
        adopt_one(inner, &db, name, record).await;
    }
}

async fn adopt_one(inner: &Arc<Inner>, db: &Arc<StateDb>, name: String, mut record: CellRecord) {
    let mut handles = Vec::new();
    let mut ended_while_away = Vec::new();
    if record.state == CellState::Running {
        for (i, c) in record.containers.iter().enumerate() {
            let Some(process) = c.process.as_ref().filter(|_| c.exit_code.is_none()) else {
                continue;
            };
            match inner.processes.adopt(process).await {
                Adopted::Running(h) => handles.push((i, h)),
                Adopted::Ended(r) => ended_while_away.push((i, r)),
            }
        }
    }
    let phase = if handles.is_empty() {
        Phase::Stopped
    } else {
        Phase::Running
    };
    let entry = match inner.register(&name, phase, views(&record), record.ip, true, record.limits) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(cell = %name, error = %chain(&e), "adopting a cell");
            return;
        }
    };
    for (i, r) in ended_while_away {
        tracing::info!(cell = %name, container = %record.containers[i].name, "the container ended while the daemon was down");
        super::container::ended(&entry, &mut record, i, r);
        const AWAY: &str = " (while the daemon was down)";
        record.containers[i].message.push_str(AWAY);
        entry.update(i, |v| v.message.push_str(AWAY));
    }
    tracing::info!(cell = %name, running = handles.len(), "detached cell adopted from the previous daemon");
    if handles.is_empty() {
        if record.state != CellState::Stopped {
            settle(inner, db, &entry, &mut record).await;
        }
        return;
    }
    let cell = CellOps::adopted(inner.clone(), db.clone(), entry, record, handles);
    cell.save_or_log("the adopted cell").await;
    tokio::spawn(watch(cell));
}

/// The containers of a record as List shows them.
fn views(record: &CellRecord) -> Vec<ContainerView> {
    record
        .containers
        .iter()
        .map(|c| {
            let (status, message) = match (c.exit_code, &c.process) {
                (Some(_), _) => (MetaStatus::Complete, c.message.clone()),
                (None, Some(_)) if record.state == CellState::Running => {
                    (MetaStatus::Active, "running".to_string())
                }
                (None, _) if c.message.is_empty() => (MetaStatus::Unknown, "no result".into()),
                (None, _) => (MetaStatus::Error, c.message.clone()),
            };
            ContainerView {
                name: c.name.clone(),
                pid: c.process.as_ref().map(|p| p.pid),
                status,
                message,
                exit_code: c.exit_code,
                limits: super::limits::in_force(c.limits, record.limits),
                oom_killed: c.oom_killed,
            }
        })
        .collect()
}
