//! The split lifecycle of a cell: each operation acts on the cell's
//! persisted record (`store`) and its registry entry, and is the counterpart
//! of one CRI call:
//! - record: written `creating` before anything of the cell exists;
//! - sandbox create (RunPodSandbox): directory, namespaces, CNI ADD,
//!   cgroups, bundles (`setup::set_up_blocking`);
//! - container create (CreateContainer): one helper per container, all at once;
//! - container start (StartContainer): each created container is let run;
//!   the record becomes `running`;
//! - container wait (ContainerStatus): each exit goes into the record
//!   (persisted for a detached cell; a bound one's record is only ever
//!   removed after a crash, so three durable writes make a RunCell:
//!   `creating`, `running`, the removal);
//! - container stop (StopContainer, [`stop`]): the cell's stop token stops
//!   every container at once (SIGTERM, the grace period, SIGKILL);
//! - remove (RemoveContainer, RemovePodSandbox): whatever runs killed and
//!   reaped, CNI DEL, mounts, directory, cgroups, then the record.
//!
//! A detached cell (`detached`) and a RunCell cell (`run`) are both
//! compositions of these; they differ only in the record's `bound` flag
//! and in the container helpers: a RunCell cell's end with the daemon, a
//! detached cell's outlive it (see `runtime`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::container::{create_one, ended};
use super::core::{Entry, Inner, Phase};
use super::error::CellError;
use super::image::PulledImage;
use super::request::CellRequest;
use super::runtime::Control;
use super::setup::{self, ContainerRun, MIN_STEP_TIMEOUT, REAP_TIMEOUT};
use super::store::{self, CellRecord, CellState, ContainerRecord};
use crate::error_chain::chain;
use crate::process::{ProcessError, ProcessHandle};
use crate::state::StateDb;
use crate::workload::Status as MetaStatus;

/// Why the containers of a cell did not all start.
#[derive(Debug)]
pub(crate) enum StartFailure {
    /// The cell was stopped before every container had started.
    Stopped,
    /// Container `index` could not be created or started.
    Container { index: usize, why: String },
    /// The record could not be written.
    Record(CellError),
}

impl StartFailure {
    /// The failure as an error of cell `cell` with containers `req`.
    pub fn into_error(self, req: &CellRequest) -> CellError {
        match self {
            StartFailure::Stopped => CellError::StoppedBeforeStart {
                cell: req.name.clone(),
            },
            StartFailure::Container { index, why } => CellError::ContainerStart {
                cell: req.name.clone(),
                container: req.containers[index].name.clone(),
                reason: why,
            },
            StartFailure::Record(e) => e,
        }
    }
}

/// How a wait for every container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Every container exited of itself.
    Exited,
    /// The cell was stopped (Stop, a dropped call, shutdown).
    Stopped,
    /// The daemon lets go of a detached cell's containers (they run on).
    Abandoned,
}

/// One cell as its operations see it: its entry in the registry, its
/// record, and its created containers.
pub(crate) struct CellOps {
    pub inner: Arc<Inner>,
    pub db: Arc<StateDb>,
    pub entry: Arc<Entry>,
    pub record: CellRecord,
    /// The containers' bundles, once the sandbox exists.
    containers: Vec<ContainerRun>,
    /// Each created container's supervisor, by index.
    handles: Vec<(usize, ProcessHandle)>,
    /// Each created container's helper control socket, by index: a bound
    /// cell's helper kills its container once this closes.
    controls: Vec<(usize, Control)>,
}

impl CellOps {
    /// Record create: written before anything of the cell exists, so that
    /// a daemon that dies from here on leaves a record the next one acts on.
    pub async fn record(
        inner: &Arc<Inner>,
        entry: Arc<Entry>,
        req: &CellRequest,
        bound: bool,
    ) -> Result<Self, CellError> {
        let db = inner.state()?;
        let record = CellRecord {
            state: CellState::Creating,
            ip: None,
            limits: req.limits,
            bound,
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
        store::put(&db, &req.name, &record).await?;
        Ok(Self::adopted(inner.clone(), db, entry, record, Vec::new()))
    }

    /// A cell whose containers already run (adopted at daemon start).
    pub fn adopted(
        inner: Arc<Inner>,
        db: Arc<StateDb>,
        entry: Arc<Entry>,
        record: CellRecord,
        handles: Vec<(usize, ProcessHandle)>,
    ) -> Self {
        Self {
            inner,
            db,
            entry,
            record,
            containers: Vec::new(),
            handles,
            controls: Vec::new(),
        }
    }

    fn name(&self) -> &str {
        &self.entry.name
    }

    async fn save(&self) -> Result<(), CellError> {
        store::put(&self.db, self.name(), &self.record).await
    }

    /// Saves the record, logging a failure (the cell goes on).
    pub async fn save_or_log(&self, what: &str) {
        if let Err(e) = self.save().await {
            tracing::error!(cell = %self.name(), error = %chain(&e), "recording {what}");
        }
    }

    /// Sandbox create: the cell's directory, namespaces (joined to its CNI
    /// network), cgroups and every container's bundle; the address goes
    /// into the record.
    pub async fn create_sandbox(
        &mut self,
        req: &CellRequest,
        pulled: Vec<PulledImage>,
    ) -> Result<(), CellError> {
        self.entry.set_phase(Phase::Starting);
        let dir = self.inner.cell_dir(&req.name);
        let containers: Vec<ContainerRun> = req
            .containers
            .iter()
            .zip(pulled)
            .map(|(c, image)| ContainerRun::new(&dir, &c.name, c.limits, image))
            .collect();
        let (inner, entry, net, name) = (
            self.inner.clone(),
            self.entry.clone(),
            req.network.clone(),
            req.name.clone(),
        );
        let limits = req.limits;
        let (containers, set_up) = tokio::task::spawn_blocking(move || {
            let r =
                setup::set_up_blocking(&inner, &name, &dir, &containers, &net, &limits, &|ip| {
                    entry.set_ip(ip)
                });
            (containers, r)
        })
        .await
        .map_err(|e| CellError::Task(format!("setting the cell up: {e}")))?;
        self.containers = containers;
        set_up?;
        // Persisted with `running`: a `creating` record is removed whatever
        // it says, so one durable write fewer per cell.
        self.record.ip = self.entry.ip();
        Ok(())
    }

    /// Container create, then container start, of every container; the
    /// record is `running` once all run. Nothing is started unless every
    /// container was created.
    pub async fn create_and_start(&mut self) -> Result<(), StartFailure> {
        self.create_containers().await?;
        self.start_containers().await?;
        self.record.state = CellState::Running;
        self.save().await.map_err(StartFailure::Record)
    }

    fn stopped_before_start(&self) -> Result<(), StartFailure> {
        if self.entry.stop.is_cancelled() {
            return Err(StartFailure::Stopped);
        }
        Ok(())
    }

    /// Container create: every container at once, each by a helper process
    /// of its own. Each created one is supervised, also after a failure, so
    /// that the removal stops it.
    async fn create_containers(&mut self) -> Result<(), StartFailure> {
        self.stopped_before_start()?;
        let began = Instant::now();
        let within = step_timeout(&self.inner);
        let creates = self
            .containers
            .iter()
            .map(|c| create_one(&self.inner, &self.entry, c, within, !self.record.bound));
        let created = futures::future::join_all(creates).await;
        let mut failure = None;
        for (i, created) in created.into_iter().enumerate() {
            match created {
                Ok(c) => {
                    tracing::debug!(cell = %self.name(), container = %self.record.containers[i].name, pid = c.pid, create_ms = ms(began.elapsed()), "container created");
                    self.entry.update(i, |v| {
                        v.pid = Some(c.pid);
                        v.message = "created".to_string();
                    });
                    self.record.containers[i].process = c.process;
                    self.handles.push((i, c.handle));
                    self.controls.push((i, c.control));
                }
                Err(why) => {
                    failure.get_or_insert(StartFailure::Container { index: i, why });
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Container start: lets every created container run, in order.
    async fn start_containers(&mut self) -> Result<(), StartFailure> {
        let within = step_timeout(&self.inner);
        for (i, control) in &mut self.controls {
            if self.entry.stop.is_cancelled() {
                return Err(StartFailure::Stopped);
            }
            let began = Instant::now();
            control
                .start(within)
                .await
                .map_err(|why| StartFailure::Container { index: *i, why })?;
            tracing::info!(cell = %self.entry.name, container = %self.record.containers[*i].name, start_ms = ms(began.elapsed()), "container started");
            self.entry.update(*i, |v| {
                v.status = MetaStatus::Active;
                v.message = "running".to_string();
            });
        }
        Ok(())
    }

    /// Container wait: collects each container's exit into the record (and
    /// List) until all have exited; a stop of the cell stops them all at
    /// once (SIGTERM, the grace period, SIGKILL).
    pub async fn wait(&mut self) -> Waited {
        let handles = std::mem::take(&mut self.handles);
        let stops: Vec<CancellationToken> = handles.iter().map(|(_, h)| h.stop_token()).collect();
        *self.entry.abandon.lock().unwrap_or_else(|p| p.into_inner()) = handles
            .iter()
            .filter_map(|(_, h)| h.abandon_token())
            .collect();
        let mut waits: FuturesUnordered<_> = handles
            .into_iter()
            .map(|(i, h)| async move { (i, h.wait().await) })
            .collect();
        let entry = self.entry.clone();
        let mut stopping = false;
        loop {
            tokio::select! {
                next = waits.next() => match next {
                    None => break,
                    Some((_, Err(ProcessError::Abandoned { .. }))) => {
                        tracing::info!(cell = %entry.name, "left running for the next daemon to adopt");
                        return Waited::Abandoned;
                    }
                    Some((i, finished)) => {
                        ended(&entry, &mut self.record, i, finished);
                        // A bound cell's exits are its call's answer; after a
                        // crash its record is only removed, so none is
                        // persisted (a durable write each).
                        if !self.record.bound {
                            self.save_or_log("a container's exit").await;
                        }
                    }
                },
                _ = entry.stop.cancelled(), if !stopping => {
                    stopping = true;
                    entry.set_phase(Phase::Stopping);
                    tracing::info!(cell = %entry.name, grace_ms = ms(self.inner.processes.grace()), "stopping the cell");
                    for s in &stops {
                        s.cancel();
                    }
                }
            }
        }
        if stopping {
            Waited::Stopped
        } else {
            Waited::Exited
        }
    }

    /// Remove: see [`remove`]. The helpers' control sockets close after
    /// their containers are gone.
    pub async fn remove(mut self) -> Result<(), CellError> {
        let handles = std::mem::take(&mut self.handles);
        let removed = remove(&self.inner, &self.db, &self.entry.name, handles).await;
        self.controls.clear();
        removed
    }
}

/// Container stop of every container of the cell: its stop token reaches
/// each container's supervisor at once (SIGTERM, the grace period,
/// SIGKILL; see [`CellOps::wait`]). Returns once a detached cell is
/// PASSIVE, or a RunCell cell removed.
pub(crate) async fn stop(entry: &Entry) {
    entry.stop.cancel();
    if entry.detached {
        entry.settled().await;
    } else {
        entry.gone().await;
    }
}

/// Remove: kills whatever runs of cell `cell` and waits (bounded) for each
/// supervisor in `handles` to reap and drain its container, then CNI DEL,
/// mounts, directory and cgroups, then the record. A record whose cell could
/// not be removed stays, so that the next start tries again.
pub(crate) async fn remove(
    inner: &Arc<Inner>,
    db: &Arc<StateDb>,
    cell: &str,
    handles: Vec<(usize, ProcessHandle)>,
) -> Result<(), CellError> {
    let began = Instant::now();
    let (i, name) = (inner.clone(), cell.to_string());
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || i.cgroups.kill(&name)).await {
        tracing::warn!(cell, error = %chain(&e), "killing the cell");
    }
    let grace = inner.processes.grace();
    let waits = handles.into_iter().map(|(_, h)| async move {
        let pid = h.pid();
        h.stop();
        (
            pid,
            tokio::time::timeout(grace + REAP_TIMEOUT, h.wait()).await,
        )
    });
    for (pid, finished) in futures::future::join_all(waits).await {
        if finished.is_err() {
            tracing::error!(cell, pid, "a killed container did not exit");
        }
    }
    let (i, name) = (inner.clone(), cell.to_string());
    tokio::task::spawn_blocking(move || i.reclaim(&name))
        .await
        .map_err(|e| CellError::Task(format!("removing the cell: {e}")))??;
    store::delete(db, cell).await?;
    tracing::debug!(cell, teardown_ms = ms(began.elapsed()), "cell removed");
    Ok(())
}

/// The least time a container's create or start may take.
fn step_timeout(inner: &Inner) -> Duration {
    inner.processes.grace().max(MIN_STEP_TIMEOUT)
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
