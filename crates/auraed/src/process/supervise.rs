//! The task that owns a child: waits for it, stops it on request (SIGTERM to
//! the whole cgroup, a grace period, then SIGKILL), kills what it left in its
//! cgroup, drains its output and removes the cgroup.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::ProcessError;
use super::exit::ExitKind;
use super::output::OutputLog;
use super::pidfd::ChildExit;
use super::pool::CgroupPool;
use super::spawn::Held;
use crate::cgroups::{CgroupDriver, CgroupPath, CgroupProbe};
use crate::logs::{cri::now_nanos, read_output, EndMarker, OutputText};

/// How long to wait for the output pipes after every process of the cgroup
/// is gone: only a process that left the cgroup can still hold them.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The end of a process.
#[derive(Debug, Clone)]
pub struct Finished {
    pub pid: i32,
    pub exit: ExitKind,
    /// Its complete log.
    pub log_dir: PathBuf,
    /// True when it ended because it was asked to stop (cancel, disable, shutdown).
    pub stopped: bool,
    /// True when the kernel's OOM killer killed a process of its cgroup
    /// (read before the cgroup is removed).
    pub oom_killed: bool,
    /// Bytes its log holds, when known without reading it (0: no output).
    pub logged_bytes: Option<u64>,
}

impl Finished {
    /// The output as text, at most `limit` bytes per stream (read from its log).
    pub async fn output(&self, limit: usize) -> OutputText {
        if self.logged_bytes == Some(0) {
            // Nothing was written (the common `true`): no directory to list.
            return OutputText::default();
        }
        // In place: no hop to another thread for what is mostly a small read.
        let read = super::output::blocking_io(|| read_output(&self.log_dir, limit));
        read.unwrap_or_else(|e| OutputText {
            stdout: String::new(),
            stderr: format!("[aurae: the output log could not be read: {e}]"),
        })
    }
}

/// The end marker of a log from how the process ended.
pub(crate) fn end_marker(exit: Option<ExitKind>, message: String) -> EndMarker {
    EndMarker {
        ended_at: now_nanos(),
        code: match exit {
            Some(ExitKind::Code(c)) => Some(c),
            _ => None,
        },
        signal: match exit {
            Some(ExitKind::Signal(s)) => Some(s),
            _ => None,
        },
        message,
    }
}

/// A running process; dropping the handle does not stop it (use `stop` or a drop guard).
pub struct ProcessHandle {
    pid: i32,
    stop: CancellationToken,
    /// For a detached process: ends supervision and leaves it running.
    abandon: Option<CancellationToken>,
    done: JoinHandle<Result<Finished, ProcessError>>,
}

impl ProcessHandle {
    pub(super) fn new(
        pid: i32,
        stop: CancellationToken,
        done: JoinHandle<Result<Finished, ProcessError>>,
    ) -> Self {
        Self {
            pid,
            stop,
            abandon: None,
            done,
        }
    }

    pub(super) fn detached(
        pid: i32,
        stop: CancellationToken,
        abandon: CancellationToken,
        done: JoinHandle<Result<Finished, ProcessError>>,
    ) -> Self {
        Self {
            pid,
            stop,
            abandon: Some(abandon),
            done,
        }
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

    /// For a detached process, a token whose cancellation lets go of it
    /// without stopping it (daemon exit): its monitor goes on, the next
    /// daemon adopts it, and `wait` returns `ProcessError::Abandoned`.
    pub fn abandon_token(&self) -> Option<CancellationToken> {
        self.abandon.clone()
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
    pub output: OutputLog,
    pub grace: Duration,
    pub stop: CancellationToken,
    pub running: Arc<AtomicUsize>,
    /// Where the cgroup goes back to instead of being removed, if anywhere.
    pub pool: Option<Arc<CgroupPool>>,
    /// What the daemon holds open for the child.
    pub held: Held,
}

pub(super) async fn supervise(mut s: Supervised) -> Result<Finished, ProcessError> {
    let ended = async {
        tokio::select! {
            status = s.child.wait() => (status, false),
            _ = s.stop.cancelled() => {
                let exit = terminate(&s.cgroups, &s.cgroup, s.grace, &s.child).await;
                let exit = exit.and_then(|e| e.ok_or_else(|| std::io::Error::other("not a child of the daemon")));
                (exit, true)
            }
        }
    };
    let (status, stopped) = s.output.alongside(ended).await;
    // Now the pipes end when the last process holding them does.
    s.held.writers.clear();
    // The main process is gone; like systemd's KillMode=control-group, so is the rest of its cgroup.
    let probe = s.held.files.probe.as_ref();
    let leftovers = match probe.map(CgroupProbe::leaf_pids) {
        Some(Ok(Some(pids))) => !pids.is_empty(),
        // Cgroups below it, or no open files: walk the tree.
        _ => s.cgroups.pids(&s.cgroup).is_ok_and(|p| !p.is_empty()),
    };
    if leftovers {
        s.output.alongside(kill_all(&s.cgroups, &s.cgroup)).await;
    }
    let (exit, message) = match &status {
        Ok(exit) => (Some(*exit), exit.describe()),
        Err(e) => (None, format!("lost track of the process: {e}")),
    };
    let log_dir = s.output.dir().to_path_buf();
    let oom_killed = match probe.map(CgroupProbe::oom_kills) {
        Some(Ok(n)) => n > 0,
        _ => oom_killed(s.cgroups.as_ref(), &s.cgroup),
    };
    // Every process is gone and the log holds all output: that is the result.
    let drained = s.output.drain().await;
    // A cgroup that had to be cleared of leftovers may still hold some.
    let unkept = match s.pool.filter(|_| !leftovers) {
        Some(pool) => pool.keep(s.cgroup.clone(), s.held.files).err(),
        None => Some(s.cgroup.clone()),
    };
    let logs = drained.logs().clone();
    let (logged_bytes, evicted) = drained.finish(exit, message);
    let (cgroups, running) = (s.cgroups.clone(), s.running.clone());
    let blocking = unkept.is_some() || !evicted.is_empty();
    let release = move || {
        if let Some(cgroup) = unkept {
            if let Err(e) = cgroups.remove(&cgroup) {
                tracing::warn!(cgroup = cgroup.as_str(), error = %e, "removing cgroup");
            }
        }
        logs.remove_old(evicted);
        running.fetch_sub(1, Ordering::Relaxed);
    };
    // Usually nothing is left to do (the cgroup went back to the pool, no
    // log was evicted): in place, saving a thread wake-up per run. An rmdir
    // per v1 hierarchy or removing old logs goes to the blocking pool, after
    // the caller has its result.
    if blocking {
        tokio::task::spawn_blocking(release);
    } else {
        release();
    }
    let exit = status.map_err(|source| ProcessError::Wait { pid: s.pid, source })?;
    Ok(Finished {
        pid: s.pid,
        exit,
        log_dir,
        stopped,
        oom_killed,
        logged_bytes,
    })
}

/// Whether the OOM killer killed a process of `cgroup`; an unreadable
/// counter is logged and reads as no.
pub(super) fn oom_killed(cgroups: &dyn CgroupDriver, cgroup: &CgroupPath) -> bool {
    match cgroups.oom_kills(cgroup) {
        Ok(n) => n > 0,
        Err(e) => {
            tracing::warn!(cgroup = cgroup.as_str(), error = %crate::error_chain::chain(&e), "reading the OOM kill counter");
            false
        }
    }
}

/// SIGTERM to the whole cgroup, the grace period, then SIGKILL; returns
/// once `child` has exited (its exit when it is a child of the daemon).
pub(super) async fn terminate(
    cgroups: &Arc<dyn CgroupDriver>,
    cgroup: &CgroupPath,
    grace: Duration,
    child: &ChildExit,
) -> std::io::Result<Option<ExitKind>> {
    let (cg, path) = (cgroups.clone(), cgroup.clone());
    let term = tokio::task::spawn_blocking(move || cg.signal_all(&path, Signal::SIGTERM)).await;
    if !matches!(term, Ok(Ok(_))) {
        tracing::warn!(
            pid = child.pid(),
            "sending SIGTERM to the cgroup failed: signalling the process"
        );
        let _ = child.signal(libc::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait_exited()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::info!(
                pid = child.pid(),
                grace_ms = grace.as_millis() as u64,
                "grace period over: killing"
            );
            kill_all(cgroups, cgroup).await;
            // Placement could have failed: kill it directly too.
            let _ = child.signal(libc::SIGKILL);
            child.wait_exited().await
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
