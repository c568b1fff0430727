//! The executables subsystem: validates, spawns through the process layer,
//! waits, and shapes the result.

use std::sync::atomic::{AtomicU64, Ordering};

use aurae_proto::meta::{AuraeMeta, ProcessMeta, Status as MetaStatus};
use aurae_proto::runtime::{Executable, ExecutableStatus};

use super::split::split_command;
use crate::cgroups::CgroupPath;
use crate::process::{ProcessError, ProcessSpec, Processes};
use crate::validation::validate_name;

/// Bytes of stdout and of stderr returned in an `ExecutableStatus` (the stream has all).
pub const RESPONSE_OUTPUT_LIMIT: usize = 16 << 20;
/// Longest accepted command line.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;

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
    pub async fn run(&self, exe: Executable) -> Result<ExecutableStatus, tonic::Status> {
        let name = exe
            .meta
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        if !name.is_empty() {
            validate_name("meta.name", &name)?;
        }
        if exe.command.len() > MAX_COMMAND_LEN {
            return Err(tonic::Status::invalid_argument(format!(
                "command is {} bytes long: at most {MAX_COMMAND_LEN} are allowed",
                exe.command.len()
            )));
        }
        let argv = split_command(&exe.command)?;
        if argv.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "command is empty: give a program and its arguments, e.g. \"echo hi\" (use \"sh -c '...'\" for a shell)",
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cgroup = self
            .cgroup_parent
            .join(&format!("run-{id}"))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let spec = ProcessSpec {
            argv,
            cgroup,
            capture_limit: RESPONSE_OUTPUT_LIMIT,
        };
        let handle = match self.processes.spawn(spec) {
            Ok(h) => h,
            Err(e @ ProcessError::Start { .. }) => {
                tracing::info!(name = %name, command = %exe.command, error = %e, "executable could not start");
                return Ok(ExecutableStatus {
                    meta: Some(AuraeMeta {
                        name,
                        message: e.to_string(),
                    }),
                    proc: None,
                    status: MetaStatus::Error as i32,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e.into()),
        };
        let pid = handle.pid();
        tracing::debug!(pid, name = %name, command = %exe.command, "executable started");
        let guard = handle.stop_token().drop_guard();
        let finished = handle.wait().await;
        guard.disarm();
        let finished = finished?;
        tracing::debug!(pid, exit = %finished.exit.describe(), "executable finished");
        Ok(ExecutableStatus {
            meta: Some(AuraeMeta {
                name,
                message: finished.exit.describe(),
            }),
            proc: Some(ProcessMeta { pid }),
            status: MetaStatus::Complete as i32,
            stdout: finished.stdout.to_text(),
            stderr: finished.stderr.to_text(),
            exit_code: finished.exit.code().to_string(),
        })
    }
}
