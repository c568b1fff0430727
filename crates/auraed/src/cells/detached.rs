//! Detached cells (`cells.Cells/Start`, `aer cell start`): cells that
//! outlive their call and the daemon, until `cells.Cells/Remove`.
//!
//! The lifecycle is a chain of separate operations on the cell's record
//! (`store`), in the order the Kubernetes CRI calls them:
//! - sandbox create (RunPodSandbox): directory, namespaces, CNI ADD,
//!   cgroups, bundles (`lifecycle::set_up_blocking`);
//! - container create (CreateContainer): one detached helper per container
//!   (`runtime::create` with a log directory), all in parallel;
//! - container start (StartContainer): each created container is let run;
//! - wait: a watcher per cell collects each container's exit into the
//!   record;
//! - stop (StopContainer/StopPodSandbox): SIGTERM, the grace period,
//!   SIGKILL to every container's cgroup; the record stays (PASSIVE);
//! - remove (RemoveContainer/RemovePodSandbox): CNI DEL, cgroups, mounts,
//!   directory, record (`Inner::reclaim`).
//!
//! A start that fails half-way removes everything it made. Each
//! container's helper works like `auraed monitor` once the container runs,
//! so a restarted daemon adopts the containers from their records
//! ([`adopt_all`]) and learns how those that ended while it was down ended.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::core::{CellResult, ContainerView, Entry, Inner, Phase, Reservation};
use super::error::CellError;
use super::image::PulledImage;
use super::lifecycle::{self, ContainerRun, MIN_STEP_TIMEOUT, REAP_TIMEOUT};
use super::request::{self, CellRequest, CellSpec};
use super::runtime::{self, DetachedLog};
use super::store::{self, CellRecord, CellState, ContainerRecord, CELLS};
use crate::error_chain::chain;
use crate::logs::Kind;
use crate::process::{start_time, Adopted, DetachedRecord, Finished, ProcessError, ProcessHandle};
use crate::state::StateDb;
use crate::workload::Status as MetaStatus;

/// Starts `cell` detached; answers once every container has started.
pub(crate) async fn start(inner: &Arc<Inner>, cell: CellSpec) -> Result<CellResult, CellError> {
    let db = inner.state()?;
    let req = request::validate(&cell, inner.processes.defaults().limits)?;
    inner.check_limits(&req)?;
    let reservation = inner.reserve(&req, true)?;
    let pulled = inner.pull_all(&req).await?;
    lifecycle::check_runnable(&req, &pulled)?;
    let record = CellRecord {
        state: CellState::Creating,
        ip: None,
        limits: req.limits,
        containers: req
            .containers
            .iter()
            .map(|c| ContainerRecord {
                name: c.name.clone(),
                image: c.image.clone(),
                process: None,
                exit_code: None,
                message: String::new(),
                limits: c.limits,
                oom_killed: false,
            })
            .collect(),
    };
    // Before anything exists: a daemon that dies from here on leaves a
    // `creating` record, and the next one removes what was made.
    store::put(&db, &req.name, &record).await?;
    // A task of its own: a dropped call must not leave a half-made cell.
    let task = tokio::spawn(bring_up(
        inner.clone(),
        db,
        reservation,
        req,
        pulled,
        record,
    ));
    task.await.map_err(|e| CellError::Task(e.to_string()))?
}

/// Sandbox, containers created and started; on failure, everything removed.
async fn bring_up(
    inner: Arc<Inner>,
    db: Arc<StateDb>,
    reservation: Reservation,
    req: CellRequest,
    pulled: Vec<PulledImage>,
    mut record: CellRecord,
) -> Result<CellResult, CellError> {
    let entry = reservation.entry.clone();
    entry.set_phase(Phase::Starting);
    let mut handles = Vec::new();
    let made = create_and_start(&inner, &entry, &req, pulled, &mut record, &mut handles).await;
    let made = match made {
        Ok(()) => {
            record.state = CellState::Running;
            record.ip = entry.ip();
            store::put(&db, &req.name, &record).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = made {
        tracing::warn!(cell = %req.name, error = %chain(&e), "the cell could not start: removing it");
        stop_and_reclaim(&inner, &req.name, handles).await;
        if let Err(e) = store::delete(&db, &req.name).await {
            tracing::warn!(cell = %req.name, error = %chain(&e), "removing the record of a cell that did not start");
        }
        return Err(e);
    }
    entry.set_phase(Phase::Running);
    tracing::info!(cell = %req.name, containers = handles.len(), "detached cell started");
    let result = CellResult {
        name: req.name.clone(),
        message: "started".to_string(),
        status: MetaStatus::Active,
        containers: entry.views().iter().map(ContainerView::to_result).collect(),
        ip: entry.ip(),
    };
    let entry = reservation.keep();
    tokio::spawn(watch(inner, db, entry, handles, record));
    Ok(result)
}

/// The sandbox, then every container created at once (each in its own
/// helper), then each started. `handles` gets every created container's
/// supervisor, also when a later step fails.
async fn create_and_start(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    req: &CellRequest,
    pulled: Vec<PulledImage>,
    record: &mut CellRecord,
    handles: &mut Vec<(usize, ProcessHandle)>,
) -> Result<(), CellError> {
    let name = req.name.clone();
    let dir = inner.cell_dir(&name);
    let mut containers: Vec<ContainerRun> = req
        .containers
        .iter()
        .zip(pulled)
        .map(|(c, image)| ContainerRun::new(&dir, &c.name, c.limits, image))
        .collect();
    let (i2, e2, net, d2, n2) = (
        inner.clone(),
        entry.clone(),
        req.network.clone(),
        dir.clone(),
        name.clone(),
    );
    let limits = req.limits;
    let set_up = tokio::task::spawn_blocking(move || {
        let r = lifecycle::set_up_blocking(&i2, &n2, &d2, &mut containers, &net, &limits, &|ip| {
            e2.set_ip(ip)
        });
        // The root filesystems stay mounted with the cell; its removal
        // unmounts everything under its directory.
        for c in &mut containers {
            if let Some(rootfs) = c.rootfs.take() {
                rootfs.leave_mounted();
            }
        }
        (containers, r)
    })
    .await
    .map_err(|e| CellError::Task(format!("setting the cell up: {e}")))?;
    let (containers, set_up) = set_up;
    set_up?;
    stopped_before_start(entry, &name)?;

    let within = inner.processes.grace().max(MIN_STEP_TIMEOUT);
    let creates = containers
        .iter()
        .enumerate()
        .map(|(i, c)| create_one(inner, &name, i, c, within));
    let mut controls = Vec::new();
    let mut failure = None;
    for (i, created) in futures::future::join_all(creates)
        .await
        .into_iter()
        .enumerate()
    {
        match created {
            Ok((process, handle, control)) => {
                entry.update(i, |v| {
                    v.pid = Some(process.pid);
                    v.message = "created".to_string();
                });
                record.containers[i].process = Some(process);
                handles.push((i, handle));
                controls.push((i, control));
            }
            Err(why) => {
                failure.get_or_insert(CellError::ContainerStart {
                    cell: name.clone(),
                    container: containers[i].name.clone(),
                    reason: why,
                });
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    stopped_before_start(entry, &name)?;
    for (i, mut control) in controls {
        control
            .start(within)
            .await
            .map_err(|reason| CellError::ContainerStart {
                cell: name.clone(),
                container: containers[i].name.clone(),
                reason,
            })?;
        entry.update(i, |v| {
            v.status = MetaStatus::Active;
            v.message = "running".to_string();
        });
    }
    Ok(())
}

fn stopped_before_start(entry: &Entry, cell: &str) -> Result<(), CellError> {
    if entry.stop.is_cancelled() {
        return Err(CellError::StoppedBeforeStart {
            cell: cell.to_string(),
        });
    }
    Ok(())
}

/// Creates container `c` in a detached helper: its output goes to a log of
/// its own, and the helper is watched like a monitor from the start.
async fn create_one(
    inner: &Inner,
    cell: &str,
    i: usize,
    c: &ContainerRun,
    within: Duration,
) -> Result<(DetachedRecord, ProcessHandle, runtime::Control), String> {
    let processes = &inner.processes;
    let logs = processes.logs().clone();
    let log_name = format!("{cell}.{}", c.name);
    let log_dir = tokio::task::spawn_blocking(move || logs.create(Kind::DetachedCell, &log_name))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("creating the container's log: {e}"))?;
    let cgroup = inner
        .cgroups
        .container(cell, &c.name)
        .map_err(|e| chain(&e))?;
    let state = inner.cell_dir(cell).join("state");
    let created = runtime::create(
        processes.exe(),
        &c.name,
        &c.dir,
        &state,
        within,
        Some(DetachedLog {
            log_dir: &log_dir,
            cgroup: cgroup.as_str(),
            limits: processes.logs().limits(),
        }),
    )
    .await?;
    let helper_pid = created.helper.pid();
    let record = DetachedRecord {
        pid: created.pid,
        monitor_pid: helper_pid,
        monitor_start: start_time(helper_pid).unwrap_or(0),
        cgroup: cgroup.as_str().to_string(),
        log_dir,
    };
    // Watched (and reaped) through the record from now on, as after a restart.
    created.helper.disown();
    if let Err(e) = processes.logs().link_pid(record.pid, &record.log_dir) {
        tracing::warn!(cell, container = %c.name, error = %e, "indexing the container's log by pid");
    }
    tracing::debug!(cell, container = %c.name, index = i, pid = record.pid, helper = helper_pid, "container created");
    match processes.adopt(&record).await {
        Adopted::Running(handle) => Ok((record, handle, created.control)),
        Adopted::Ended(_) => Err("the container's helper ended before the start".into()),
    }
}

/// Stops what runs of a cell that could not start and removes it all.
async fn stop_and_reclaim(inner: &Arc<Inner>, cell: &str, handles: Vec<(usize, ProcessHandle)>) {
    let grace = inner.processes.grace();
    let waits = handles.into_iter().map(|(_, h)| async move {
        h.stop();
        let _ = tokio::time::timeout(grace + REAP_TIMEOUT, h.wait()).await;
    });
    futures::future::join_all(waits).await;
    reclaim(inner, cell).await;
}

async fn reclaim(inner: &Arc<Inner>, cell: &str) {
    let (i, name) = (inner.clone(), cell.to_string());
    match tokio::task::spawn_blocking(move || i.reclaim(&name)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(cell, error = %chain(&e), "removing the cell; the next start retries")
        }
        Err(e) => tracing::error!(cell, error = %e, "removing the cell"),
    }
}

/// Collects each container's exit into the record until all have exited
/// (or the daemon leaves them running); stops them all when the cell's
/// stop token is cancelled.
async fn watch(
    inner: Arc<Inner>,
    db: Arc<StateDb>,
    entry: Arc<Entry>,
    handles: Vec<(usize, ProcessHandle)>,
    mut record: CellRecord,
) {
    let stops: Vec<CancellationToken> = handles.iter().map(|(_, h)| h.stop_token()).collect();
    *entry.abandon.lock().unwrap_or_else(|p| p.into_inner()) = handles
        .iter()
        .filter_map(|(_, h)| h.abandon_token())
        .collect();
    let mut waits: FuturesUnordered<_> = handles
        .into_iter()
        .map(|(i, h)| async move { (i, h.wait().await) })
        .collect();
    let mut stopping = false;
    loop {
        tokio::select! {
            next = waits.next() => match next {
                None => break,
                Some((_, Err(ProcessError::Abandoned { .. }))) => {
                    tracing::info!(cell = %entry.name, "left running for the next daemon to adopt");
                    return;
                }
                Some((i, finished)) => {
                    ended(&entry, &mut record, i, finished);
                    if let Err(e) = store::put(&db, &entry.name, &record).await {
                        tracing::error!(cell = %entry.name, error = %chain(&e), "recording a container's exit");
                    }
                }
            },
            _ = entry.stop.cancelled(), if !stopping => {
                stopping = true;
                entry.set_phase(Phase::Stopping);
                tracing::info!(cell = %entry.name, grace_ms = inner.processes.grace().as_millis() as u64, "stopping the detached cell");
                for s in &stops {
                    s.cancel();
                }
            }
        }
    }
    settle(&db, &entry, &mut record).await;
}

/// Every container has exited: the cell is PASSIVE until removed.
async fn settle(db: &Arc<StateDb>, entry: &Entry, record: &mut CellRecord) {
    record.state = CellState::Stopped;
    if let Err(e) = store::put(db, &entry.name, record).await {
        tracing::error!(cell = %entry.name, error = %chain(&e), "recording the cell's end");
    }
    entry.set_phase(Phase::Stopped);
    entry.idle.send_replace(true);
    tracing::info!(cell = %entry.name, "detached cell stopped: its containers have all exited");
}

/// Records how container `i` ended, in the record and for List.
fn ended(
    entry: &Entry,
    record: &mut CellRecord,
    i: usize,
    finished: Result<Finished, ProcessError>,
) {
    let oom_killed = matches!(&finished, Ok(f) if f.oom_killed);
    let (status, message, code) = match &finished {
        // As Kubernetes' OOMKilled: a failure, whatever the exit code.
        Ok(f) if f.oom_killed => (
            MetaStatus::Error,
            lifecycle::OOM_KILLED.to_string(),
            Some(f.exit.code()),
        ),
        Ok(f) => (MetaStatus::Complete, f.exit.describe(), Some(f.exit.code())),
        Err(e) => (
            MetaStatus::Error,
            format!("lost track of it: {}", chain(e)),
            None,
        ),
    };
    if let Some(c) = record.containers.get_mut(i) {
        tracing::info!(cell = %entry.name, container = %c.name, exit = %message, "container exited");
        c.exit_code = code;
        c.message = message.clone();
        c.oom_killed = oom_killed;
    }
    entry.update(i, |v| {
        v.status = status;
        v.message = message;
        v.exit_code = code;
        v.oom_killed = oom_killed;
    });
}

/// Removes cell `name`: stops it first when `force`, refuses a running one
/// otherwise.
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
    if entry.phase() != Phase::Stopped {
        if !force {
            return Err(CellError::StillRunning {
                cell: name.to_string(),
            });
        }
        tracing::info!(cell = name, "stopping the cell to remove it");
        entry.stop.cancel();
        entry.settled().await;
    }
    if entry.released() {
        // A start that failed meanwhile removed everything itself.
        return Ok("removed".to_string());
    }
    reclaim(inner, name).await;
    store::delete(&db, name).await?;
    inner.release(&entry);
    tracing::info!(cell = name, "detached cell removed");
    Ok("removed".to_string())
}

/// Takes back the detached cells an earlier daemon recorded: running
/// containers are supervised again (same pids, output still reaching their
/// logs), exits that happened while no daemon watched are recorded, and a
/// start the daemon did not finish is removed.
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
        if record.state == CellState::Creating {
            tracing::info!(cell = %name, "removing a cell whose start the previous daemon did not finish");
            reclaim(inner, &name).await;
            if let Err(e) = store::delete(&db, &name).await {
                tracing::warn!(cell = %name, error = %chain(&e), "removing a record");
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
        ended(&entry, &mut record, i, r);
        const AWAY: &str = " (while the daemon was down)";
        record.containers[i].message.push_str(AWAY);
        entry.update(i, |v| v.message.push_str(AWAY));
    }
    tracing::info!(cell = %name, running = handles.len(), "detached cell adopted from the previous daemon");
    if handles.is_empty() {
        if record.state != CellState::Stopped {
            settle(db, &entry, &mut record).await;
        }
        return;
    }
    if let Err(e) = store::put(db, &name, &record).await {
        tracing::error!(cell = %name, error = %chain(&e), "recording the adopted cell");
    }
    tokio::spawn(watch(inner.clone(), db.clone(), entry, handles, record));
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
