//! Starting a process: its cgroup first, then a vfork-style clone, placement
//! into the cgroup before exec (so no descendant can escape it), then exec.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::ProcessError;
use super::identity::{self, Identity};
use super::launch::launch;
use super::output::{off_worker, open_log, OutputLog};
use super::pidfd::ChildExit;
use super::pool::{CgroupFiles, CgroupPool, PoolCgroup};
use super::supervise::{supervise, ProcessHandle, Supervised};
use super::vfork::open_placement;
use crate::cgroups::{CgroupDriver, CgroupPath, Limits};
use crate::logs::{Kind, LogStore, LogWriter};

/// What to run and where.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Program and arguments; the program is looked up in `PATH` when it has no `/`.
    pub argv: Vec<OsString>,
    /// The process's own cgroup; created here, removed when the process is done.
    pub cgroup: CgroupPath,
    /// What kind of workload it is, and its name (may be empty): they name its log.
    pub kind: Kind,
    pub name: String,
    /// Limits of its cgroup; unset ones take the daemon's defaults.
    pub limits: Limits,
    /// User and group to run as (names or ids); empty: the daemon's default.
    pub user: String,
    pub group: String,
}

/// What every workload gets unless its request says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadDefaults {
    /// Limits applied to every workload cgroup (`--default-pids-max`, ...).
    pub limits: Limits,
    /// User a workload runs as when none is given (`--default-user`); empty: root.
    pub user: String,
}

impl ProcessSpec {
    /// The program, as text for messages.
    pub(crate) fn program(&self) -> Result<String, ProcessError> {
        self.argv
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .ok_or(ProcessError::EmptyCommand)
    }
}

/// The process layer shared by every workload kind.
#[derive(Clone)]
pub struct Processes {
    pub(super) cgroups: Arc<dyn CgroupDriver>,
    pub(super) logs: Arc<LogStore>,
    pub(super) grace: Duration,
    /// Cancelled at daemon shutdown: every supervised process is then stopped.
    shutdown: CancellationToken,
    /// Processes started and not yet finished.
    pub(super) running: Arc<AtomicUsize>,
    /// The program run as `<monitor_exe> monitor SPEC` for detached processes.
    pub(super) monitor_exe: PathBuf,
    pub(super) defaults: Arc<WorkloadDefaults>,
}

impl Processes {
    pub fn new(cgroups: Arc<dyn CgroupDriver>, logs: Arc<LogStore>, grace: Duration) -> Self {
        Self {
            cgroups,
            logs,
            grace,
            shutdown: CancellationToken::new(),
            running: Arc::new(AtomicUsize::new(0)),
            // This very binary, even if the file was replaced by an upgrade.
            monitor_exe: PathBuf::from("/proc/self/exe"),
            defaults: Arc::default(),
        }
    }

    /// Applies `defaults` to every workload started from now on.
    pub fn with_defaults(mut self, defaults: WorkloadDefaults) -> Self {
        self.defaults = Arc::new(defaults);
        self
    }

    pub fn defaults(&self) -> &WorkloadDefaults {
        &self.defaults
    }

    /// Resolves who `spec` runs as, then creates its cgroup with its limits;
    /// blocking. On failure nothing is left: the cgroup is removed again.
    pub(super) fn prepare(&self, spec: &ProcessSpec) -> Result<Option<Identity>, ProcessError> {
        self.prepare_in(spec, false)
    }

    /// As [`Self::prepare`]; `made`: the cgroup exists with the default
    /// limits already (a kept one of a [`CgroupPool`]).
    fn prepare_in(&self, spec: &ProcessSpec, made: bool) -> Result<Option<Identity>, ProcessError> {
        let identity = identity::resolve(&spec.user, &spec.group, &self.defaults.user)?;
        if made {
            return Ok(identity);
        }
        let limits = spec.limits.or(self.defaults.limits);
        crate::cgroups::check_controllers(self.cgroups.as_ref(), &limits).map_err(|source| {
            ProcessError::Cgroup {
                path: spec.cgroup.as_str().to_string(),
                source,
            }
        })?;
        let made = self
            .cgroups
            .create(&spec.cgroup)
            .and_then(|()| self.cgroups.set_limits(&spec.cgroup, &limits));
        if let Err(source) = made {
            if let Err(e) = self.cgroups.remove(&spec.cgroup) {
                tracing::warn!(cgroup = spec.cgroup.as_str(), error = %e, "removing the cgroup of a failed start");
            }
            return Err(ProcessError::Cgroup {
                path: spec.cgroup.as_str().to_string(),
                source,
            });
        }
        Ok(identity)
    }

    /// Uses `exe` as the monitor program (tests run from other binaries).
    pub fn with_monitor_exe(mut self, exe: PathBuf) -> Self {
        self.monitor_exe = exe;
        self
    }

    pub fn cgroups(&self) -> &Arc<dyn CgroupDriver> {
        &self.cgroups
    }

    pub fn logs(&self) -> &Arc<LogStore> {
        &self.logs
    }

    /// Processes started through this layer that have not finished.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Stops every process started through this layer (SIGTERM, grace, SIGKILL).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Starts `spec`; the returned handle yields the result once the process
    /// has exited, the rest of its cgroup is killed and its output drained.
    pub fn spawn(&self, spec: ProcessSpec) -> Result<ProcessHandle, ProcessError> {
        self.spawn_in(spec, None, CgroupFiles::default())
    }

    /// As [`Self::spawn`], in `cgroup` of `pool` (which must have the
    /// default limits: `spec.limits` is not applied), given back to the pool
    /// once the process is done unless something was left in it.
    pub fn spawn_pooled(
        &self,
        mut spec: ProcessSpec,
        pool: &Arc<CgroupPool>,
        cgroup: PoolCgroup,
    ) -> Result<ProcessHandle, ProcessError> {
        spec.cgroup = cgroup.path;
        spec.limits = Limits::default();
        let pool = Some((pool.clone(), cgroup.made));
        self.spawn_in(spec, pool, cgroup.files)
    }

    /// `files`: the open files of a kept cgroup of `pool`, if any.
    fn spawn_in(
        &self,
        spec: ProcessSpec,
        pool: Option<(Arc<CgroupPool>, bool)>,
        files: CgroupFiles,
    ) -> Result<ProcessHandle, ProcessError> {
        let made = pool.as_ref().is_some_and(|(_, made)| *made);
        let pooled = pool.is_some();
        let program = spec.program()?;
        // Alone, the clone runs in place: handing the worker's tasks to
        // another thread costs more than the clone then.
        let busy = self.running.load(Ordering::Relaxed) > 0;
        let started = off_worker(busy, || {
            let identity = self.prepare_in(&spec, made)?;
            let mut files = files;
            // A cgroup bound for the pool keeps its files for its next runs.
            if pooled && files.probe.is_none() {
                files.probe = self.cgroups.probe(&spec.cgroup).ok();
            }
            let placement = if files.placement.is_empty() {
                open_placement(&self.cgroups.self_placement_files(&spec.cgroup))
            } else {
                Ok(std::mem::take(&mut files.placement))
            };
            let started = placement.and_then(|placement| {
                files.placement = placement;
                self.start(&spec, identity.as_ref(), files)
            });
            started.map_err(|source| {
                if let Err(e) = self.cgroups.remove(&spec.cgroup) {
                    tracing::warn!(cgroup = spec.cgroup.as_str(), error = %e, "removing cgroup of a failed start");
                }
                ProcessError::Start {
                    program: program.clone(),
                    source,
                }
            })
        });
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                drop_pooled(pool.as_ref(), &spec.cgroup);
                return Err(e);
            }
        };
        // The log is made while the child execs (usually on another CPU),
        // not before the clone: one directory operation less on the path.
        // Its output waits in the pipes meanwhile.
        let writer = match open_log(&self.logs, spec.kind, &spec.name) {
            Ok((_, writer)) => writer,
            Err(source) => {
                off_worker(true, || self.undo_start(started, &spec.cgroup));
                return Err(ProcessError::Log { program, source });
            }
        };
        self.supervise_child(started, spec, writer, pool.map(|(pool, _)| pool))
    }

    /// Kills a started child (and whatever it started) whose log could not
    /// be made, and removes its cgroup: no workload runs without its log.
    fn undo_start(&self, started: Started, cgroup: &CgroupPath) {
        if let Err(e) = self.cgroups.kill_all(cgroup) {
            tracing::warn!(cgroup = cgroup.as_str(), error = %e, "killing a start without a log");
        }
        // Should the cgroup kill have failed, the child at least goes (the drop reaps it).
        let _ = started.exit.signal(libc::SIGKILL);
        drop(started);
        if let Err(e) = self.cgroups.remove(cgroup) {
            tracing::warn!(cgroup = cgroup.as_str(), error = %e, "removing the cgroup of a start without a log");
        }
    }

    /// Launches the child into its cgroup and takes ownership of it.
    fn start(
        &self,
        spec: &ProcessSpec,
        identity: Option<&Identity>,
        files: CgroupFiles,
    ) -> std::io::Result<Started> {
        let procs: Vec<_> = files.placement.iter().map(|fd| fd.as_fd()).collect();
        let l = launch(&spec.argv, &procs, identity)?;
        // Take ownership of the child first, so any later error still kills and reaps it.
        let exit = ChildExit::from_pidfd(l.pid, l.pidfd)?;
        Ok(Started {
            pid: l.pid,
            exit,
            stdout: l.stdout,
            stderr: l.stderr,
            writers: l.writers,
            files,
        })
    }

    fn supervise_child(
        &self,
        started: Started,
        spec: ProcessSpec,
        writer: LogWriter,
        pool: Option<Arc<CgroupPool>>,
    ) -> Result<ProcessHandle, ProcessError> {
        let Started {
            pid,
            exit: child,
            stdout,
            stderr,
            writers,
            files,
        } = started;
        let output =
            OutputLog::start(&self.logs, pid, writer, stdout, stderr).map_err(|source| {
                ProcessError::Log {
                    program: spec.program().unwrap_or_default(),
                    source,
                }
            })?;
        let stop = self.shutdown.child_token();
        let held = Held {
            writers: writers.into(),
            files,
        };
        let handle = self.supervise(pid, child, spec.cgroup, output, stop, pool, held);
        Ok(handle)
    }

    /// Supervises a child (a process started here, or a container's helper
    /// process, whose end is the container's): waits for it, stops it when
    /// `stop` is cancelled (SIGTERM to `cgroup`, the grace period, SIGKILL),
    /// then kills what is left in `cgroup`, removes it (or gives it back to
    /// `pool`, with the open files of `held`) and closes `output`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn supervise(
        &self,
        pid: i32,
        child: ChildExit,
        cgroup: CgroupPath,
        output: OutputLog,
        stop: CancellationToken,
        pool: Option<Arc<CgroupPool>>,
        held: Held,
    ) -> ProcessHandle {
        self.running.fetch_add(1, Ordering::Relaxed);
        let done = tokio::spawn(supervise(Supervised {
            pid,
            child,
            cgroup,
            cgroups: self.cgroups.clone(),
            output,
            grace: self.grace,
            stop: stop.clone(),
            running: self.running.clone(),
            pool,
            held,
        }));
        ProcessHandle::new(pid, stop, done)
    }

    /// This binary, as run for helper processes (`auraed monitor`, `auraed container`).
    pub(crate) fn exe(&self) -> &std::path::Path {
        &self.monitor_exe
    }
}

/// Removes the pool's cgroup of a start that failed (a kept one is not
/// made again, so a failure before or after placement leaves nothing).
fn drop_pooled(pool: Option<&(Arc<CgroupPool>, bool)>, cgroup: &CgroupPath) {
    if let Some((pool, _)) = pool {
        pool.remove(cgroup);
    }
}

/// A child that has exec'd, with the daemon's ends of its output pipes.
struct Started {
    pid: i32,
    exit: ChildExit,
    stdout: OwnedFd,
    stderr: OwnedFd,
    writers: [OwnedFd; 2],
    files: CgroupFiles,
}

/// What the daemon holds open for a child it supervises.
#[derive(Default)]
pub(crate) struct Held {
    /// Its copies of the child's output pipes (see
    /// [`super::launch::Launched::writers`]), closed once the child exited.
    pub writers: Vec<OwnedFd>,
    /// The open files of the child's cgroup, kept with the cgroup when it
    /// goes back to the pool.
    pub files: CgroupFiles,
}
