//! The task that owns a child: waits for it, stops it on request (SIGTERM to
//! the whole cgroup, a grace period, then SIGKILL), kills what it left in its
//! cgroup, drains its output and removes the cgroup.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::capture::Captured;
use super::error::ProcessError;
use super::exit::ExitKind;
use super::pidfd::ChildExit;
use crate::cgroups::{CgroupDriver, CgroupPath};
use crate::observe::output::ProcessOutput;
use crate::observe::ProcessOutputs;

/// How long to wait for the output pipes after every process of the cgroup is gone.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The end of a process.
#[derive(Debug, Clone)]
pub struct Finished {
    pub pid: i32,
    pub exit: ExitKind,
    pub stdout: Captured,
    pub stderr: Captured,
    /// True when it ended because it was asked to stop (cancel, disable, shutdown).
    pub stopped: bool,
}

/// A running process; dropping the handle does not stop it (use `stop` or a drop guard).
pub struct ProcessHandle {
    pid: i32,
    stop: CancellationToken,
    done: JoinHandle<Result<Finished, ProcessError>>,
}

impl ProcessHandle {
    pub(super) fn new(
        pid: i32,
        stop: CancellationToken,
        done: JoinHandle<Result<Finished, ProcessError>>,
    ) -> Self {
        Self { pid, stop, done }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Asks the supervisor to stop the process; `wait` then returns.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// A token whose cancellation stops the process (e.g. as a drop guard tied to a gRPC call).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn is_finished(&self) -> bool {
        self.done.is_finished()
    }

    pub async fn wait(self) -> Result<Finished, ProcessError> {
        let pid = self.pid;
        self.done
            .await
            .map_err(|_| ProcessError::SupervisorGone { pid })?
    }
}

pub(super) struct Supervised {
    pub pid: i32,
    /// Owns the pidfd; kills the child if this task is dropped before reaping it.
    pub child: ChildExit,
    pub cgroup: CgroupPath,
    pub cgroups: Arc<dyn CgroupDriver>,
    pub outputs: Arc<ProcessOutputs>,
    pub output: Arc<ProcessOutput>,
    pub stdout: Option<JoinHandle<Captured>>,
    pub stderr: Option<JoinHandle<Captured>>,
    pub grace: Duration,
    pub stop: CancellationToken,
}

pub(super) async fn supervise(mut s: Supervised) -> Result<Finished, ProcessError> {
    let (status, stopped) = tokio::select! {
        status = s.child.wait() => (status, false),
        _ = s.stop.cancelled() => (terminate(&mut s).await, true),
    };
    // The main process is gone; like systemd's KillMode=control-group, so is the rest of its cgroup.
    let leftovers = s
        .cgroups
        .pids(&s.cgroup)
        .map(|p| !p.is_empty())
        .unwrap_or(false);
    if leftovers {
        kill_all(&s.cgroups, &s.cgroup).await;
    }
    let stdout = drain(s.stdout.take()).await;
    let stderr = drain(s.stderr.take()).await;
    let cgroups = s.cgroups.clone();
    let cgroup = s.cgroup.clone();
    match tokio::task::spawn_blocking(move || cgroups.remove(&cgroup)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(cgroup = s.cgroup.as_str(), error = %e, "removing cgroup"),
        Err(e) => tracing::warn!(cgroup = s.cgroup.as_str(), error = %e, "removing cgroup"),
    }
    s.outputs.finished(s.pid, &s.output);
    let exit = status.map_err(|source| ProcessError::Wait { pid: s.pid, source })?;
    Ok(Finished {
        pid: s.pid,
        exit,
        stdout,
        stderr,
        stopped,
    })
}

/// SIGTERM to the whole cgroup, the grace period, then SIGKILL.
async fn terminate(s: &mut Supervised) -> std::io::Result<ExitKind> {
    if let Err(e) = s.cgroups.signal_all(&s.cgroup, Signal::SIGTERM) {
        tracing::warn!(pid = s.pid, error = %e, "sending SIGTERM to the cgroup");
        let _ = s.child.signal(libc::SIGTERM);
    }
    match tokio::time::timeout(s.grace, s.child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::info!(
                pid = s.pid,
                grace_ms = s.grace.as_millis() as u64,
                "grace period over: killing"
            );
            kill_all(&s.cgroups, &s.cgroup).await;
            // The main process is in the cgroup, but kill it directly too in case placement failed.
            let _ = s.child.signal(libc::SIGKILL);
            s.child.wait().await
        }
    }
}

async fn kill_all(cgroups: &Arc<dyn CgroupDriver>, cgroup: &CgroupPath) {
    let (cg, path) = (cgroups.clone(), cgroup.clone());
    match tokio::task::spawn_blocking(move || cg.kill_all(&path)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(cgroup = cgroup.as_str(), error = %e, "killing the cgroup"),
        Err(e) => tracing::warn!(cgroup = cgroup.as_str(), error = %e, "killing the cgroup"),
    }
}

async fn drain(reader: Option<JoinHandle<Captured>>) -> Captured {
    let Some(mut reader) = reader else {
        return Captured::default();
    };
    match tokio::time::timeout(DRAIN_TIMEOUT, &mut reader).await {
        Ok(Ok(c)) => c,
        Ok(Err(_)) => Captured::default(),
        Err(_) => {
            // Something outside the cgroup holds the pipe open: stop waiting for it.
            reader.abort();
            Captured::default()
        }
    }
}
