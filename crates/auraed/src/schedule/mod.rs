//! The schedule subsystem: executables the daemon keeps running, like
//! systemd units with `Restart=always`.
//!
//! - `store`: the registry on disk (redb), durable before a call is answered.
//! - `supervisor`: one task per enabled executable: start, wait, back off, restart.
//!
//! The `schedule.Schedule` and `schedule.ScheduleExecutable` handlers are in
//! `crate::api::schedule`.
//!
//! Every mutation of one name runs under that name's lock and in a task of
//! its own, so concurrent calls for one name cannot interleave and a client
//! that goes away mid-call cannot leave the disk and the running processes
//! disagreeing. The order is always: validate, persist, then act.

mod error;
mod store;
mod supervisor;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use error::ScheduleError;
pub use store::{Record, Store};
pub use supervisor::{
    Backoff, StartLimit, UnitState, BACKOFF_MAX, BACKOFF_RESET_AFTER, BACKOFF_START,
    START_LIMIT_BURST, START_LIMIT_INTERVAL,
};

use crate::cgroups::CgroupPath;
use crate::executables::{parse_command, split_command};
use crate::observe::WorkloadCounts;
use crate::process::{resolve_identity, Adopted, DetachedRecord, Processes};
use crate::state::StateDb;
use crate::validation::validate_name;
use crate::workload::Status as MetaStatus;
use supervisor::{lock, Launch, SharedState, Supervisor};

/// Longest accepted command line.
pub use crate::executables::MAX_COMMAND_LEN;
/// Longest accepted comment.
pub const MAX_COMMENT_LEN: usize = 4 * 1024;
/// How long Enable waits for the first start before answering (it answers
/// `STATUS_STANDBY` when the start is slower).
const FIRST_START_WAIT: Duration = Duration::from_secs(5);
/// Added to the stop grace period to bound `shutdown`.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(5);

/// An executable to keep running.
pub use crate::workload::ExecutableSpec as UnitSpec;

/// A registered executable as listed, with its current state in `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUnit {
    pub spec: UnitSpec,
    pub message: String,
}

/// The registry of scheduled executables and their supervisors.
pub struct Schedule {
    store: Store,
    processes: Processes,
    /// Run processes through monitors, so they outlive the daemon (the
    /// daemon's mode; unit tests run them attached).
    detached: bool,
    /// `<cgroup root>/schedule`: each executable runs in `<cgroup_parent>/<name>`.
    cgroup_parent: CgroupPath,
    /// One lock per name: mutations of a name are serialised, those of different names are not.
    name_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    units: BTreeMap<String, Unit>,
    /// Set by `shutdown`: no supervisor is started after it.
    shutting_down: bool,
}

struct Unit {
    record: Record,
    state: SharedState,
    supervisor: Option<Supervisor>,
}

impl Unit {
    fn supervised(&self) -> bool {
        self.supervisor.as_ref().is_some_and(Supervisor::is_running)
    }
}

impl Schedule {
    /// Opens the registry in the state database. Nothing is started
    /// before [`Schedule::start`]. `detached` runs processes through
    /// monitors so that they outlive the daemon and are adopted again.
    pub fn open(
        db: Arc<StateDb>,
        processes: Processes,
        cgroup_parent: CgroupPath,
        detached: bool,
    ) -> Result<Arc<Self>, ScheduleError> {
        let store = Store::new(db);
        let records = store.load()?;
        let units = records
            .into_iter()
            .map(|(name, record)| {
                let status = if record.enabled {
                    MetaStatus::Standby
                } else {
                    MetaStatus::Passive
                };
                let unit = Unit {
                    record,
                    state: Arc::new(Mutex::new(UnitState::new(status))),
                    supervisor: None,
                };
                (name, unit)
            })
            .collect::<BTreeMap<_, _>>();
        tracing::info!(
            db = %store.path().display(),
            registered = units.len(),
            enabled = units.values().filter(|u| u.record.enabled).count(),
            "schedule registry opened"
        );
        Ok(Arc::new(Self {
            store,
            processes,
            detached,
            cgroup_parent,
            name_locks: Mutex::new(HashMap::new()),
            registry: Mutex::new(Registry {
                units,
                shutting_down: false,
            }),
        }))
    }

    /// Stops and removes every cgroup left under the cgroup parent by a
    /// daemon that died (so nothing ever runs twice), then starts every
    /// enabled executable. Returns once each has been started once (bounded).
    pub async fn start(&self) {
        let runs = self.take_runs().await;
        self.clean_leftovers(&runs).await;
        let names: Vec<String> = self
            .registry()
            .units
            .iter()
            .filter(|(_, u)| u.record.enabled)
            .map(|(n, _)| n.clone())
            .collect();
        let mut first_starts = Vec::new();
        let mut runs = runs;
        for name in names {
            let name_lock = self.name_lock(&name);
            let _guard = name_lock.lock().await;
            if let Some(rx) = self.start_unit(&name, runs.remove(&name)) {
                first_starts.push(rx);
            }
        }
        let n = first_starts.len();
        let all = futures::future::join_all(first_starts);
        if tokio::time::timeout(FIRST_START_WAIT, all).await.is_err() {
            tracing::warn!("some scheduled executables are slow to start");
        }
        tracing::info!(started = n, "scheduled executables started");
    }

    /// Ends every supervisor, bounded by the stop grace period plus a few
    /// seconds; nothing starts afterwards. With `stop_workloads` their
    /// processes are stopped; otherwise detached ones keep running for the
    /// next daemon to adopt (like `systemctl daemon-reexec`).
    pub async fn shutdown(&self, stop_workloads: bool) {
        let supervisors: Vec<Supervisor> = {
            let mut reg = self.registry();
            reg.shutting_down = true;
            reg.units
                .values_mut()
                .filter_map(|u| u.supervisor.take())
                .collect()
        };
        let n = supervisors.len();
        if !stop_workloads && self.detached {
            futures::future::join_all(supervisors.into_iter().map(Supervisor::detach)).await;
            tracing::info!(
                left_running = n,
                "scheduled executables left running for the next daemon"
            );
            return;
        }
        let all = futures::future::join_all(supervisors.into_iter().map(Supervisor::stop));
        let bound = self.processes.grace() + SHUTDOWN_SLACK;
        if tokio::time::timeout(bound, all).await.is_err() {
            tracing::warn!(
                bound_ms = bound.as_millis() as u64,
                "scheduled executables did not all stop in time"
            );
        } else {
            tracing::info!(stopped = n, "scheduled executables stopped");
        }
    }

    /// Registers `unit` (persisted before anything starts), starts it and keeps
    /// it running. Returns the status line of the executable.
    pub async fn enable(self: &Arc<Self>, unit: UnitSpec) -> Result<String, ScheduleError> {
        let this = self.clone();
        detach(async move { this.enable_now(unit).await }).await
    }

    /// Persists the executable `name` as disabled, stops it and returns once
    /// its process is gone.
    pub async fn disable(self: &Arc<Self>, name: String) -> Result<String, ScheduleError> {
        let this = self.clone();
        detach(async move { this.disable_now(name).await }).await
    }

    /// Forgets the executable `name` (durably) and stops it if it runs.
    pub async fn destroy(self: &Arc<Self>, name: String) -> Result<String, ScheduleError> {
        let this = self.clone();
        detach(async move { this.destroy_now(name).await }).await
    }

    /// The registered executables that are enabled (or disabled), sorted by
    /// name, with their current state in `message`.
    pub fn list(&self, enabled: bool) -> Vec<ListedUnit> {
        self.registry()
            .units
            .iter()
            .filter(|(_, u)| u.record.enabled == enabled)
            .map(|(name, u)| ListedUnit {
                spec: UnitSpec {
                    name: name.clone(),
                    command: u.record.command.clone(),
                    comment: u.record.comment.clone(),
                    limits: u.record.limits,
                    user: u.record.user.clone(),
                    group: u.record.group.clone(),
                },
                message: lock(&u.state).message(),
            })
            .collect()
    }

    /// The current state of `name`, if it is registered.
    pub fn state(&self, name: &str) -> Option<UnitState> {
        self.registry()
            .units
            .get(name)
            .map(|u| lock(&u.state).clone())
    }

    async fn enable_now(&self, exe: UnitSpec) -> Result<String, ScheduleError> {
        let name = name_of(&exe.name)?;
        validate_command(&exe)?;
        exe.limits.validate()?;
        crate::cgroups::check_controllers(self.processes.cgroups().as_ref(), &exe.limits)?;
        // Refused now rather than accepted and then failing at each start.
        resolve_identity(&exe.user, &exe.group, &self.processes.defaults().user)?;
        let cgroup = self.cgroup_parent.workload(&name)?;
        let name_lock = self.name_lock(&name);
        let guard = name_lock.lock().await;
        if self.registry().shutting_down {
            return Err(ScheduleError::ShuttingDown);
        }
        let wanted = Record {
            command: exe.command.clone(),
            comment: exe.comment.clone(),
            enabled: true,
            limits: exe.limits,
            user: exe.user.clone(),
            group: exe.group.clone(),
        };
        let (existing, supervised) = match self.registry().units.get(&name) {
            Some(u) => (Some(u.record.clone()), u.supervised()),
            None => (None, false),
        };
        if let Some(old) = &existing {
            if old.command != wanted.command {
                return Err(ScheduleError::AlreadyExists {
                    name,
                    state: if old.enabled { "enabled" } else { "disabled" },
                    existing: old.command.clone(),
                    requested: wanted.command,
                });
            }
            if old.settings() != wanted.settings() {
                return Err(ScheduleError::SettingsDiffer {
                    name,
                    state: if old.enabled { "enabled" } else { "disabled" },
                    existing: old.settings(),
                    requested: wanted.settings(),
                });
            }
        }
        if existing.as_ref() != Some(&wanted) {
            self.persist(&name, wanted.clone()).await?;
        }
        {
            let mut reg = self.registry();
            let unit = reg.units.entry(name.clone()).or_insert_with(|| Unit {
                record: wanted.clone(),
                state: Arc::new(Mutex::new(UnitState::new(MetaStatus::Standby))),
                supervisor: None,
            });
            unit.record = wanted;
        }
        let first = if supervised {
            None
        } else {
            tracing::info!(name = %name, command = %exe.command, cgroup = cgroup.as_str(), "scheduled executable enabled");
            self.start_unit(&name, None)
        };
        drop(guard);
        if let Some(rx) = first {
            let _ = tokio::time::timeout(FIRST_START_WAIT, rx).await;
        }
        Ok(self.message(&name))
    }

    async fn disable_now(&self, name: String) -> Result<String, ScheduleError> {
        let name = name_of(&name)?;
        let name_lock = self.name_lock(&name);
        let _guard = name_lock.lock().await;
        let record = match self.registry().units.get(&name) {
            Some(u) => u.record.clone(),
            None => return Err(ScheduleError::NotFound { name }),
        };
        if record.enabled {
            self.persist(
                &name,
                Record {
                    enabled: false,
                    ..record
                },
            )
            .await?;
        }
        let (supervisor, state) = {
            let mut reg = self.registry();
            let Some(unit) = reg.units.get_mut(&name) else {
                return Err(ScheduleError::NotFound { name });
            };
            unit.record.enabled = false;
            (unit.supervisor.take(), unit.state.clone())
        };
        if let Some(s) = supervisor {
            s.stop().await;
            tracing::info!(name = %name, "scheduled executable disabled");
        }
        {
            let mut s = lock(&state);
            s.status = MetaStatus::Passive;
            s.pid = 0;
            s.error = None;
        }
        Ok(self.message(&name))
    }

    async fn destroy_now(&self, name: String) -> Result<String, ScheduleError> {
        let name = name_of(&name)?;
        let name_lock = self.name_lock(&name);
        let guard = name_lock.lock().await;
        if !self.registry().units.contains_key(&name) {
            return Err(ScheduleError::NotFound { name });
        }
        let store = self.store.clone();
        let key = name.clone();
        blocking(move || store.delete(&key)).await?;
        let unit = self.registry().units.remove(&name);
        let mut last_exit = String::new();
        if let Some(unit) = unit {
            if let Some(s) = unit.supervisor {
                s.stop().await;
            }
            last_exit = lock(&unit.state).last_exit.clone();
        }
        tracing::info!(name = %name, "scheduled executable destroyed");
        drop(guard);
        self.forget_lock(&name, name_lock);
        Ok(format!("destroyed last_exit={last_exit:?}"))
    }

    /// Starts the supervisor of the registered, enabled `name` unless the
    /// daemon is shutting down; returns the first-start signal.
    fn start_unit(
        &self,
        name: &str,
        adopt: Option<DetachedRecord>,
    ) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let mut reg = self.registry();
        if reg.shutting_down {
            return None;
        }
        let unit = reg.units.get_mut(name)?;
        if !unit.record.enabled || unit.supervised() {
            return None;
        }
        let state: SharedState = Arc::new(Mutex::new(UnitState::new(MetaStatus::Standby)));
        unit.state = state.clone();
        let launch = split_command(&unit.record.command)
            .map_err(|e| e.to_string())
            .and_then(|argv| {
                let cgroup = self
                    .cgroup_parent
                    .workload(name)
                    .map_err(|e| e.to_string())?;
                Ok(Launch {
                    name: name.to_string(),
                    argv,
                    cgroup,
                    limits: unit.record.limits,
                    user: unit.record.user.clone(),
                    group: unit.record.group.clone(),
                    processes: self.processes.clone(),
                    runs: self.detached.then(|| self.store.clone()),
                    adopt,
                })
            });
        match launch {
            Ok(launch) => {
                let (supervisor, first) = Supervisor::start(launch, state);
                unit.supervisor = Some(supervisor);
                Some(first)
            }
            Err(reason) => {
                // Only a database edited by hand gets here: Enable validates both.
                tracing::error!(name, reason = %reason, "scheduled executable cannot be started");
                let mut s = lock(&state);
                s.status = MetaStatus::Error;
                s.error = Some(reason);
                None
            }
        }
    }

    /// The runs an earlier daemon left: those of enabled units are returned
    /// for adoption; the others (a unit disabled or forgotten since) are
    /// stopped and forgotten.
    async fn take_runs(&self) -> BTreeMap<String, DetachedRecord> {
        let store = self.store.clone();
        let runs = match blocking(move || store.runs()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the recorded runs: their processes will be stopped as leftovers");
                return BTreeMap::new();
            }
        };
        let mut keep = BTreeMap::new();
        for (name, run) in runs {
            let enabled = self
                .registry()
                .units
                .get(&name)
                .is_some_and(|u| u.record.enabled);
            if enabled && self.detached {
                keep.insert(name, run);
                continue;
            }
            if let Adopted::Running(handle) = self.processes.adopt(&run).await {
                tracing::info!(name = %name, pid = run.pid, "stopping a run of a unit that is no longer enabled");
                handle.stop();
                let _ = handle.wait().await;
            }
            let (store, key) = (self.store.clone(), name.clone());
            if let Err(e) = blocking(move || store.delete_run(&key)).await {
                tracing::warn!(name = %name, error = %e, "forgetting a run");
            }
        }
        keep
    }

    async fn clean_leftovers(&self, runs: &BTreeMap<String, DetachedRecord>) {
        let adopted = runs.values().map(|r| r.cgroup.clone()).collect();
        self.processes
            .clean_leftovers(&self.cgroup_parent, adopted, "schedule")
            .await;
    }

    async fn persist(&self, name: &str, record: Record) -> Result<(), ScheduleError> {
        let store = self.store.clone();
        let key = name.to_string();
        blocking(move || store.put(&key, &record)).await
    }

    fn message(&self, name: &str) -> String {
        self.state(name).map(|s| s.message()).unwrap_or_default()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.name_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    /// Drops the lock of a destroyed name unless another call holds or awaits it.
    fn forget_lock(&self, name: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.name_locks.lock().unwrap_or_else(|p| p.into_inner());
        // One reference in the map, one here: nobody else has it.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(name);
        }
    }
}

impl WorkloadCounts for Schedule {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        let reg = self.registry();
        let enabled = reg.units.values().filter(|u| u.record.enabled).count();
        let running = reg
            .units
            .values()
            .filter(|u| lock(&u.state).pid != 0)
            .count();
        vec![("scheduled", enabled), ("scheduled running", running)]
    }
}

/// `meta.name`, validated.
fn name_of(name: &str) -> Result<String, ScheduleError> {
    validate_name("meta.name", name)?;
    Ok(name.to_string())
}

/// Checks `command` and `comment` of an Enable.
fn validate_command(exe: &UnitSpec) -> Result<Vec<std::ffi::OsString>, ScheduleError> {
    if exe.comment.len() > MAX_COMMENT_LEN {
        return Err(ScheduleError::CommentTooLong {
            len: exe.comment.len(),
        });
    }
    Ok(parse_command(&exe.command)?)
}

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ScheduleError> + Send + 'static,
) -> Result<T, ScheduleError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ScheduleError::Task(e.to_string()))?
}

/// Runs `fut` to completion even if the caller stops waiting for it.
async fn detach<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T, ScheduleError>> + Send + 'static,
) -> Result<T, ScheduleError> {
    tokio::spawn(fut)
        .await
        .map_err(|e| ScheduleError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests;
