//! [`Cells`]: the registry of running cells and the entry points of the
//! subsystem (run, list, stop, clean-up of leftovers, shutdown).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::cgroup::CellCgroups;
use super::error::CellError;
use super::exec::{ExecRequest, ExecResult};
use super::image::{ImageSource, PulledImage};
use super::request::{self, CellRequest, CellSpec};
use crate::cgroups::{CgroupPath, Limits, HOST_MOUNT_ROOT};
use crate::cni::Cni;
use crate::observe::WorkloadCounts;
use crate::process::Processes;
use crate::state::StateDb;
use crate::workload::Status as MetaStatus;

/// How long `shutdown` waits for cells beyond their grace period.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(10);

/// The cells subsystem. Cheap to clone; every clone is the same registry.
#[derive(Clone)]
pub struct Cells {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub images: Arc<dyn ImageSource>,
    pub cgroups: CellCgroups,
    /// Supervises every container's helper; its grace period is the cells'.
    pub processes: Processes,
    /// `<runtime_dir>/cells`: one directory per cell.
    pub dir: PathBuf,
    /// CNI networking of the sandboxes; without it every cell has loopback only.
    pub network: OnceLock<Arc<Cni>>,
    /// Where detached cells are recorded; without it, Start is refused.
    state: OnceLock<Arc<StateDb>>,
    shutdown: CancellationToken,
    running: Mutex<HashMap<String, Arc<Entry>>>,
}

/// Where a running cell is in its life, for List.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Pulling,
    Starting,
    Running,
    Stopping,
    /// A detached cell whose containers have all exited; kept until removed.
    Stopped,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pulling => "pulling images",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
        }
    }

    fn status(self) -> MetaStatus {
        match self {
            Phase::Pulling | Phase::Starting => MetaStatus::Standby,
            Phase::Running | Phase::Stopping => MetaStatus::Active,
            Phase::Stopped => MetaStatus::Passive,
        }
    }
}

/// One container as List shows it.
#[derive(Debug, Clone)]
pub(crate) struct ContainerView {
    pub name: String,
    pub pid: Option<i32>,
    pub status: MetaStatus,
    pub message: String,
    pub exit_code: Option<i32>,
    pub limits: Limits,
    pub oom_killed: bool,
}

impl ContainerView {
    pub fn to_result(&self) -> ContainerResult {
        ContainerResult {
            name: self.name.clone(),
            message: self.message.clone(),
            pid: self.pid,
            status: self.status,
            exit_code: self.exit_code,
            limits: self.limits,
            oom_killed: self.oom_killed,
        }
    }
}

/// One container of a cell: how it ended (RunCell) or where it is (List).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerResult {
    pub name: String,
    pub message: String,
    /// Its init process, once it has one.
    pub pid: Option<i32>,
    pub status: MetaStatus,
    /// Once it has exited: its code, or 128 + the signal that ended it.
    pub exit_code: Option<i32>,
    /// In force: its own limits, else the cell's (`None`: unlimited).
    pub limits: Limits,
    /// The kernel's OOM killer killed one of its processes.
    pub oom_killed: bool,
}

/// The answer of a RunCell: the cell's status and summary, and each container's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellResult {
    pub name: String,
    pub message: String,
    pub status: MetaStatus,
    pub containers: Vec<ContainerResult>,
    /// Its address on its CNI network, if it had one.
    pub ip: Option<IpAddr>,
}

/// A running cell as List shows it: `phase` is where it is in its life
/// ("pulling images", "running", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningCell {
    pub name: String,
    pub phase: String,
    pub containers: Vec<ContainerResult>,
    pub ip: Option<IpAddr>,
    /// STANDBY while it starts, ACTIVE while it runs, PASSIVE once a
    /// detached cell's containers have all exited.
    pub status: MetaStatus,
    /// Started by Start (outlives its call and the daemon), not by RunCell.
    pub detached: bool,
    /// The cell's limits in force, the daemon's defaults included.
    pub limits: Limits,
}

/// A cell from the moment its name is taken until its teardown is done.
pub(crate) struct Entry {
    pub name: String,
    /// Cancelled to stop the cell (Stop, a dropped call, shutdown).
    pub stop: CancellationToken,
    /// The cell's limits in force.
    limits: Limits,
    view: Mutex<(Phase, Vec<ContainerView>)>,
    ip: Mutex<Option<IpAddr>>,
    done: watch::Sender<bool>,
    /// Started by Start: kept until Remove, not ended with a call.
    pub detached: bool,
    /// Set once a detached cell's containers have all exited.
    pub idle: watch::Sender<bool>,
    /// Cancelled at daemon exit to leave a detached cell's containers running.
    pub abandon: Mutex<Vec<CancellationToken>>,
    /// Serialises Stop and Remove of this cell (and of no other): the
    /// second of two waits for the first, then finds the cell as it left it.
    pub serial: tokio::sync::Mutex<()>,
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, (Phase, Vec<ContainerView>)> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_phase(&self, phase: Phase) {
        self.lock().0 = phase;
    }

    /// Whether the cell's name was given back (the cell is gone).
    pub fn released(&self) -> bool {
        *self.done.borrow()
    }

    pub fn phase(&self) -> Phase {
        self.lock().0
    }

    /// Every container as List shows it.
    pub fn views(&self) -> Vec<ContainerView> {
        self.lock().1.clone()
    }

    /// Waits until the cell's name is released (its removal is done).
    pub async fn gone(&self) {
        let _ = self.done.subscribe().wait_for(|d| *d).await;
    }

    /// Waits until a detached cell is idle or the entry is released.
    pub async fn settled(&self) {
        let (mut idle, mut done) = (self.idle.subscribe(), self.done.subscribe());
        tokio::select! {
            _ = idle.wait_for(|d| *d) => {}
            _ = done.wait_for(|d| *d) => {}
        }
    }

    pub fn set_ip(&self, ip: Option<IpAddr>) {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner()) = ip;
    }

    pub fn ip(&self) -> Option<IpAddr> {
        *self.ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates container `index` as List shows it.
    pub fn update(&self, index: usize, f: impl FnOnce(&mut ContainerView)) {
        if let Some(view) = self.lock().1.get_mut(index) {
            f(view);
        }
    }

    /// Container `name`'s status, init pid and message, if the cell has it.
    pub fn container_view(&self, name: &str) -> Option<(MetaStatus, Option<i32>, String)> {
        self.lock()
            .1
            .iter()
            .find(|v| v.name == name)
            .map(|v| (v.status, v.pid, v.message.clone()))
    }

    fn snapshot(&self) -> RunningCell {
        let view = self.lock();
        RunningCell {
            name: self.name.clone(),
            phase: view.0.as_str().to_string(),
            containers: view.1.iter().map(ContainerView::to_result).collect(),
            ip: self.ip(),
            status: view.0.status(),
            detached: self.detached,
            limits: self.limits,
        }
    }
}

/// Holds a cell's name in the registry; dropping it releases the name and
/// tells `stop` and `shutdown` that the cell is gone.
pub(crate) struct Reservation {
    inner: Arc<Inner>,
    pub entry: Arc<Entry>,
    kept: bool,
}

impl Reservation {
    /// Keeps the name after this reservation (a started detached cell):
    /// only `Inner::release` gives it back.
    pub fn keep(mut self) -> Arc<Entry> {
        self.kept = true;
        self.entry.clone()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.inner.release(&self.entry);
        }
    }
}

impl Inner {
    fn lock_running(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the name of `entry` back and tells `stop` and `shutdown` that
    /// the cell is gone.
    pub fn release(&self, entry: &Arc<Entry>) {
        let mut running = self.lock_running();
        if running
            .get(&entry.name)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            running.remove(&entry.name);
        }
        drop(running);
        entry.done.send_replace(true);
    }

    /// Takes `req.name` for this call (or for a detached cell), or says why not.
    pub fn reserve(
        self: &Arc<Self>,
        req: &CellRequest,
        detached: bool,
    ) -> Result<Reservation, CellError> {
        if self.shutdown.is_cancelled() {
            return Err(CellError::ShuttingDown);
        }
        let views = req
            .containers
            .iter()
            .map(|c| ContainerView {
                name: c.name.clone(),
                pid: None,
                status: MetaStatus::Standby,
                message: format!("image {}", c.image),
                exit_code: None,
                limits: super::limits::in_force(c.limits, req.limits),
                oom_killed: false,
            })
            .collect();
        let entry = self.register(&req.name, Phase::Pulling, views, None, detached, req.limits)?;
        Ok(Reservation {
            inner: self.clone(),
            entry,
            kept: false,
        })
    }

    /// Adds cell `name` to the registry, or says why not. A detached cell
    /// is not stopped by the daemon's shutdown: its stop token stands alone.
    pub fn register(
        &self,
        name: &str,
        phase: Phase,
        views: Vec<ContainerView>,
        ip: Option<IpAddr>,
        detached: bool,
        limits: Limits,
    ) -> Result<Arc<Entry>, CellError> {
        let mut running = self.lock_running();
        if let Some(existing) = running.get(name) {
            let cell = name.to_string();
            return Err(if existing.phase() == Phase::Stopped {
                CellError::Exists { cell }
            } else {
                CellError::AlreadyRunning { cell }
            });
        }
        let entry = Arc::new(Entry {
            name: name.to_string(),
            stop: if detached {
                CancellationToken::new()
            } else {
                self.shutdown.child_token()
            },
            limits,
            view: Mutex::new((phase, views)),
            ip: Mutex::new(ip),
            done: watch::channel(false).0,
            detached,
            idle: watch::channel(phase == Phase::Stopped).0,
            abandon: Mutex::new(Vec::new()),
            serial: tokio::sync::Mutex::new(()),
        });
        running.insert(name.to_string(), entry.clone());
        Ok(entry)
    }

    /// The state database, where every cell has its record.
    pub fn state(&self) -> Result<Arc<StateDb>, CellError> {
        self.state.get().cloned().ok_or(CellError::NoState)
    }

    /// Refuses limits this node's cgroups cannot apply.
    pub fn check_limits(&self, req: &CellRequest) -> Result<(), CellError> {
        let driver = self.processes.cgroups();
        std::iter::once(req.limits)
            .chain(req.containers.iter().map(|c| c.limits))
            .try_for_each(|l| crate::cgroups::check_controllers(driver.as_ref(), &l))
            .map_err(CellError::LimitUnsupported)
    }

    /// The running cell `name`.
    pub fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        self.lock_running().get(name).cloned()
    }

    /// The directory of cell `name`.
    pub fn cell_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Pulls every image of the cell, all at once; the first failure wins.
    /// Each image's run config comes back with its container's overrides applied.
    pub async fn pull_all(&self, req: &CellRequest) -> Result<Vec<PulledImage>, CellError> {
        let pulls = req.containers.iter().map(|c| async move {
            let mut pulled =
                self.images
                    .pull(&c.image)
                    .await
                    .map_err(|error| CellError::Image {
                        container: c.name.clone(),
                        image: c.image.clone(),
                        error: Box::new(error),
                    })?;
            c.process.apply(&mut pulled.config);
            Ok(pulled)
        });
        futures::future::try_join_all(pulls).await
    }

    /// Kills, unmounts and removes every trace of cell `name` that is on
    /// disk or in the cgroup tree. Blocking; safe on a missing cell.
    pub fn reclaim(&self, name: &str) -> Result<(), CellError> {
        // While the network namespace is still pinned under the cell's directory.
        super::network::disconnect(self, name);
        if let Err(e) = self.cgroups.kill(name) {
            tracing::warn!(cell = name, error = %crate::error_chain::chain(&e), "killing a cell's processes");
        }
        let dir = self.cell_dir(name);
        super::mounts::unmount_under(&dir)
            .map_err(|e| CellError::io("unmounting everything under", &dir, e))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CellError::io("removing", &dir, e)),
        }
        self.cgroups.remove(name)
    }
}

impl Cells {
    /// The cells runtime with its images from `images` (the daemon's
    /// [`crate::images::ImageStore`], or a fake in tests).
    ///
    /// Cells get the cgroups `<cgroup_parent>/<cell>/<container>` and the
    /// directories `<runtime_dir>/cells/<cell>`; `grace` is the time between
    /// SIGTERM and SIGKILL when a cell is stopped, the process layer's.
    /// Containers run under helper processes, `auraed container`, started
    /// from the process layer's executable (`Processes::with_monitor_exe`).
    pub fn new(
        images: Arc<dyn ImageSource>,
        processes: Processes,
        cgroup_parent: CgroupPath,
        runtime_dir: &Path,
    ) -> Self {
        let driver = processes.cgroups().clone();
        Self {
            inner: Arc::new(Inner {
                images,
                cgroups: CellCgroups::new(driver, Path::new(HOST_MOUNT_ROOT), cgroup_parent),
                processes,
                // Resolved: teardown compares it with mountinfo, which shows real paths.
                dir: std::fs::canonicalize(runtime_dir)
                    .unwrap_or_else(|_| runtime_dir.to_path_buf())
                    .join("cells"),
                network: OnceLock::new(),
                state: OnceLock::new(),
                shutdown: CancellationToken::new(),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records detached cells (Start) in `state`, so that a restarted
    /// daemon adopts them.
    pub fn with_state(self, state: Arc<StateDb>) -> Self {
        let _ = self.inner.state.set(state);
        self
    }

    /// Starts `cell` detached: it outlives the call and the daemon, until
    /// Remove (see `detached`). Answers once every container has started.
    pub async fn start(&self, cell: CellSpec) -> Result<CellResult, CellError> {
        super::detached::start(&self.inner, cell).await
    }

    /// Removes cell `name`: containers, sandbox, network, cgroups, record.
    /// A running cell is refused unless `force`, which stops it first.
    pub async fn remove(&self, name: &str, force: bool) -> Result<String, CellError> {
        super::detached::remove(&self.inner, name, force).await
    }

    /// Takes the detached cells of an earlier daemon back (see
    /// `detached::adopt_all`). Call at startup, before `clean_leftovers`.
    pub async fn adopt(&self) {
        super::detached::adopt_all(&self.inner).await
    }

    /// Whether detached cells still run (they stay at daemon exit).
    pub fn keeps_running(&self) -> bool {
        self.inner
            .lock_running()
            .values()
            .any(|e| e.detached && e.phase() != Phase::Stopped)
    }

    /// Connects every cell's sandbox to a CNI network (see `Cell.network`).
    pub fn with_network(self, cni: Arc<Cni>) -> Self {
        let _ = self.inner.network.set(cni);
        self
    }

    /// Runs `cell` to its end: every container has exited and every trace
    /// of the cell is gone. Dropping the future (a client cancel or
    /// deadline) stops the cell (SIGTERM, the grace period, SIGKILL) and
    /// still removes everything, in the background.
    pub async fn run(&self, cell: CellSpec) -> Result<CellResult, CellError> {
        self.inner.state()?;
        let req = request::validate(&cell, self.inner.processes.defaults().limits)?;
        self.inner.check_limits(&req)?;
        let reservation = self.inner.reserve(&req, false)?;
        let entry = reservation.entry.clone();
        // From here on, a dropped call stops the cell.
        let _stop_on_drop = entry.stop.clone().drop_guard();
        let pulled = tokio::select! {
            pulled = self.inner.pull_all(&req) => pulled?,
            _ = entry.stop.cancelled() => {
                return Err(CellError::StoppedBeforeStart { cell: req.name });
            }
        };
        super::setup::check_runnable(&req, &pulled)?;
        tracing::debug!(cell = %req.name, images = ?pulled.iter().map(|p| &p.digest).collect::<Vec<_>>(), "images pulled");
        // A task of its own: teardown runs to its end even if this future is dropped.
        let task = tokio::spawn(super::run::run(
            self.inner.clone(),
            reservation,
            req,
            pulled,
        ));
        match task.await {
            Ok(result) => result,
            Err(e) => Err(CellError::Task(e.to_string())),
        }
    }

    /// Runs a command in a running container (see `exec`).
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecResult, CellError> {
        super::exec::exec(&self.inner, req).await
    }

    /// The running cells with their containers, sorted by name.
    pub fn list(&self) -> Vec<RunningCell> {
        let entries: Vec<Arc<Entry>> = self.inner.lock_running().values().cloned().collect();
        let mut cells: Vec<RunningCell> = entries.iter().map(|e| e.snapshot()).collect();
        cells.sort_by(|a, b| a.name.cmp(&b.name));
        cells
    }

    /// How many cells are running (for status summaries).
    pub fn running(&self) -> usize {
        self.inner.lock_running().len()
    }

    /// Stops cell `name` and returns once it is torn down; its RunCell call
    /// then returns the containers' statuses. A detached cell's containers
    /// are stopped and its record kept (PASSIVE, with their exit codes)
    /// until Remove. The answer is the outcome's message.
    pub async fn stop(&self, name: &str) -> Result<String, CellError> {
        let entry = self.inner.entry(name).ok_or_else(|| CellError::NotFound {
            cell: name.to_string(),
        })?;
        let _serial = entry.serial.lock().await;
        if entry.released() {
            // Removed (or ended) while this call waited for another one.
            return Err(CellError::NotFound {
                cell: name.to_string(),
            });
        }
        if entry.detached && entry.phase() == Phase::Stopped {
            return Ok("already stopped".to_string());
        }
        tracing::info!(cell = name, "stopping cell on request");
        super::ops::stop(&entry).await;
        Ok("stopped".to_string())
    }

    /// Removes what a previous daemon left behind: the network attachments
    /// of cells it ran (CNI DEL), their cgroups (the processes killed), the
    /// mounts and directories under `<runtime_dir>/cells`, libcontainer's
    /// state with them. Blocking: call at startup, before serving.
    pub fn clean_leftovers(&self) {
        let mut names = self.inner.cgroups.cells();
        names.extend(super::network::owners(&self.inner));
        if let Ok(entries) = std::fs::read_dir(&self.inner.dir) {
            names.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        names.sort();
        names.dedup();
        let running: Vec<String> = self.inner.lock_running().keys().cloned().collect();
        for name in names.into_iter().filter(|n| !running.contains(n)) {
            // Names come from directories we made; still, never join a bad one onto a path.
            if crate::validation::validate_name("cell", &name).is_err() {
                tracing::warn!(entry = %name, dir = %self.inner.dir.display(), "ignoring an unexpected entry");
                continue;
            }
            tracing::info!(cell = %name, "removing a cell left by a previous daemon");
            if let Err(e) = self.inner.reclaim(&name) {
                tracing::warn!(cell = %name, error = %crate::error_chain::chain(&e), "could not remove a leftover cell");
            }
        }
    }

    /// At daemon exit, once every cell is torn down: removes the cells'
    /// parent cgroup from the hierarchies only libcontainer uses. Blocking.
    pub fn remove_cgroup_parent(&self) {
        if let Err(e) = self.inner.cgroups.remove_parent() {
            tracing::warn!(error = %crate::error_chain::chain(&e), "removing the cells' cgroups at exit");
        }
    }

    /// Stops every cell bound to a call and waits (bounded) until they are
    /// torn down. Detached cells stay running for the next daemon, unless
    /// `stop_detached` (`--stop-workloads-at-exit`): then their containers
    /// are stopped too and their records kept. New calls are refused from
    /// now on.
    pub async fn shutdown(&self, stop_detached: bool) {
        self.inner.shutdown.cancel();
        let entries: Vec<Arc<Entry>> = self.inner.lock_running().values().cloned().collect();
        for e in entries.iter().filter(|e| e.detached) {
            if stop_detached {
                e.stop.cancel();
            } else {
                for t in e.abandon.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    t.cancel();
                }
            }
        }
        let all = futures::future::join_all(entries.iter().map(|e| {
            let e = e.clone();
            async move {
                match (e.detached, stop_detached) {
                    (false, _) => e.gone().await,
                    (true, true) => e.settled().await,
                    (true, false) => {}
                }
            }
        }));
        if tokio::time::timeout(self.inner.processes.grace() + SHUTDOWN_SLACK, all)
            .await
            .is_err()
        {
            tracing::warn!("some cells were not torn down in time");
        }
    }
}

/// `cells N` in observe.Observe/Status.
impl WorkloadCounts for Cells {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![("cells", self.running())]
    }
}
