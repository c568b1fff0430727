//! The executables subsystem: validates, spawns through the process layer,
//! waits, and shapes the result.

use std::sync::Arc;
use std::time::Instant;

use super::error::ExecutableError;
use super::split::parse_command;
use crate::cgroups::CgroupPath;
use crate::logs::Kind;
use crate::process::{CgroupFiles, CgroupPool, PoolCgroup, ProcessError, ProcessSpec, Processes};
use crate::validation::validate_name;
use crate::workload::{ExecutableSpec, Status};

/// Bytes of stdout and of stderr returned in a [`RunResult`] (the stream has all).
pub const RESPONSE_OUTPUT_LIMIT: usize = 16 << 20;

/// What to run: `name` may be empty; `command` is split like a systemd
/// `ExecStart=` line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// What to run; unset limits, user and group take the daemon's defaults.
    pub spec: ExecutableSpec,
    /// Who asked (the client certificate's identity), for the audit trail.
    pub caller: String,
}

/// How a run ended: `status` is `Complete` once the process has exited and
/// `Error` when it could not start (then `message` says why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunResult {
    pub name: String,
    pub message: String,
    pub pid: Option<i32>,
    pub status: Status,
    pub stdout: String,
    pub stderr: String,
    pub exit_code: String,
}

pub struct Executables {
    processes: Processes,
    /// The transient RunExecutable cgroups, kept for the next run.
    pool: Arc<CgroupPool>,
}

impl Executables {
    pub fn new(processes: Processes, cgroup_parent: CgroupPath) -> Self {
        let pool = Arc::new(CgroupPool::new(processes.cgroups().clone(), cgroup_parent));
        if let Err(e) = CgroupPool::trim_in_background(&pool) {
            // Kept cgroups then stay until the daemon exits (at most MAX_KEPT).
            tracing::warn!(error = %e, "cannot start the thread that removes idle cgroups");
        }
        Self { processes, pool }
    }

    /// Kills and removes transient cgroups left behind by a daemon that died mid-call.
    pub fn clean_leftovers(&self) {
        let cgroups = self.processes.cgroups();
        let parent = self.pool.parent();
        let Ok(children) = cgroups.children(parent) else {
            return;
        };
        for child in children {
            let Ok(path) = parent.join(&child) else {
                continue;
            };
            tracing::info!(
                cgroup = path.as_str(),
                "removing a RunExecutable cgroup left by a previous daemon"
            );
            if let Err(e) = cgroups.kill_all(&path).and_then(|_| cgroups.remove(&path)) {
                tracing::warn!(cgroup = path.as_str(), error = %e, "could not remove leftover cgroup");
            }
        }
    }

    /// Runs `exe` to its end. Dropping the returned future (client cancel or
    /// deadline) stops the process and everything in its cgroup.
    pub async fn run(&self, req: RunRequest) -> Result<RunResult, ExecutableError> {
        let RunRequest { spec: exe, caller } = req;
        let name = exe.name;
        if !name.is_empty() {
            validate_name("meta.name", &name)?;
        }
        let argv = parse_command(&exe.command)?;
        exe.limits.validate()?;
        let defaults = self.processes.defaults().limits;
        // Only a cgroup with the default limits can come from the pool.
        let pooled = exe.limits.or(defaults) == defaults;
        let cgroup = if pooled {
            self.pool.take()
        } else {
            self.pool.fresh().map(|path| PoolCgroup {
                path,
                made: false,
                files: CgroupFiles::default(),
            })
        }
        .map_err(|e| ExecutableError::Cgroup(e.to_string()))?;
        let spec = ProcessSpec {
            argv,
            cgroup: cgroup.path.clone(),
            kind: Kind::Exec,
            name: name.clone(),
            limits: exe.limits,
            user: exe.user,
            group: exe.group,
        };
        let began = Instant::now();
        let spawned = if pooled {
            self.processes.spawn_pooled(spec, &self.pool, cgroup)
        } else {
            self.processes.spawn(spec)
        };
        let handle = match spawned {
            Ok(h) => h,
            Err(e @ ProcessError::Start { .. }) => {
                tracing::info!(kind = "exec", name = %name, command = %exe.command, caller = %caller, error = %e, "workload could not start");
                return Ok(RunResult {
                    name,
                    message: e.to_string(),
                    pid: None,
                    status: Status::Error,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e.into()),
        };
        let pid = handle.pid();
        tracing::info!(kind = "exec", name = %name, pid, command = %exe.command, caller = %caller, "workload started");
        // A dropped call (cancel, deadline) stops the process; the end is logged either way.
        let mut audit = AuditEnd {
            name: &name,
            pid,
            caller: &caller,
            began,
            exit: None,
        };
        let guard = handle.stop_token().drop_guard();
        let finished = handle.wait().await;
        guard.disarm();
        let finished = finished?;
        audit.exit = Some(finished.exit.describe());
        drop(audit);
        let text = finished.output(RESPONSE_OUTPUT_LIMIT).await;
        Ok(RunResult {
            name,
            message: finished.exit.describe(),
            pid: Some(pid),
            status: Status::Complete,
            stdout: text.stdout,
            stderr: text.stderr,
            exit_code: finished.exit.code().to_string(),
        })
    }
}

/// Logs the end of a RunExecutable once, however the call ends (a
/// cancelled call drops the future before `run` returns).
struct AuditEnd<'a> {
    name: &'a str,
    pid: i32,
    caller: &'a str,
    began: Instant,
    exit: Option<String>,
}

impl Drop for AuditEnd<'_> {
    fn drop(&mut self) {
        let exit = self
            .exit
            .as_deref()
            .unwrap_or("stopped: the call was cancelled or failed");
        tracing::info!(
            kind = "exec",
            name = %self.name,
            pid = self.pid,
            caller = %self.caller,
            exit = %exit,
            duration_ms = self.began.elapsed().as_millis() as u64,
            "workload ended"
        );
    }
}
