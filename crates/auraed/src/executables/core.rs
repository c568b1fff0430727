//! The executables subsystem: validates, spawns through the process layer,
//! waits, and shapes the result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::error::ExecutableError;
use super::split::parse_command;
use crate::cgroups::CgroupPath;
use crate::logs::Kind;
use crate::process::{ProcessError, ProcessSpec, Processes};
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
    /// Parent cgroup of every transient RunExecutable cgroup.
    cgroup_parent: CgroupPath,
    next_id: AtomicU64,
}

impl Executables {
    pub fn new(processes: Processes, cgroup_parent: CgroupPath) -> Self {
        Self {
            processes,
            cgroup_parent,
            next_id: AtomicU64::new(1),
        }
    }

    /// Kills and removes transient cgroups left behind by a daemon that died mid-call.
    pub fn clean_leftovers(&self) {
        let cgroups = self.processes.cgroups();
        let Ok(children) = cgroups.children(&self.cgroup_parent) else {
            return;
        };
        for child in children {
            let Ok(path) = self.cgroup_parent.join(&child) else {
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cgroup = self
            .cgroup_parent
            .workload(&format!("run-{id}"))
            .map_err(|e| ExecutableError::Cgroup(e.to_string()))?;
        let spec = ProcessSpec {
            argv,
            cgroup,
            kind: Kind::Exec,
            name: name.clone(),
            limits: exe.limits,
            user: exe.user,
            group: exe.group,
        };
        let began = Instant::now();
        let handle = match self.processes.spawn(spec) {
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
