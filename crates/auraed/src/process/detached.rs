//! Detached processes: started through a monitor (`monitor.rs`) so that
//! they, their output and their exit status outlive the daemon. The daemon
//! watches the monitor through a pidfd; the owner of the workload persists
//! the returned [`DetachedRecord`] so that a restarted daemon can adopt
//! the same process again, or learn how it ended while nobody watched.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::error::ProcessError;
use super::exit::ExitKind;
use super::identity::Identity;
use super::monitor::{MonitorReply, MonitorSpec};
use super::output::blocking_io;
use super::pidfd::ChildExit;
use super::supervise::{end_marker, terminate, Finished, ProcessHandle};
use super::{ProcessSpec, Processes};
use crate::cgroups::CgroupPath;
use crate::logs::EndMarker;

/// How long the monitor may take to report the workload's pid.
const MONITOR_START_TIMEOUT: Duration = Duration::from_secs(10);

/// What identifies a running detached process across daemon restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedRecord {
    pub pid: i32,
    pub monitor_pid: i32,
    /// The monitor's start time (clock ticks since boot, /proc/PID/stat):
    /// with the pid, it cannot be confused with a later process.
    pub monitor_start: u64,
    pub cgroup: String,
    pub log_dir: PathBuf,
}

/// What adoption found.
pub enum Adopted {
    /// Still running: supervised again.
    Running(ProcessHandle),
    /// It ended while the daemon was away.
    Ended(Result<Finished, ProcessError>),
}

impl Processes {
    /// Starts `spec` through a monitor. The process is not stopped at
    /// daemon shutdown; stop it with the handle, or abandon the handle.
    pub async fn spawn_detached(
        &self,
        spec: ProcessSpec,
    ) -> Result<(ProcessHandle, DetachedRecord), ProcessError> {
        let program = spec.program()?;
        let log_err = |source| ProcessError::Log {
            program: program.clone(),
            source,
        };
        let dir = blocking_io(|| self.logs.create(spec.kind, &spec.name)).map_err(log_err)?;
        let identity = match blocking_io(|| self.prepare(&spec)) {
            Ok(identity) => identity,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let started = self.start_monitor(&spec, &dir, identity).await;
        let (monitor, pid) = match started {
            Ok(m) => m,
            Err(why) => {
                blocking_io(|| {
                    let _ = self.cgroups.kill_all(&spec.cgroup);
                    let _ = self.cgroups.remove(&spec.cgroup);
                    let _ = std::fs::remove_dir_all(&dir);
                });
                return Err(ProcessError::Start {
                    program,
                    source: std::io::Error::other(why),
                });
            }
        };
        if let Err(e) = self.logs.link_pid(pid, &dir) {
            tracing::warn!(pid, error = %e, "indexing the log by pid");
        }
        let record = DetachedRecord {
            pid,
            monitor_pid: monitor.pid(),
            monitor_start: start_time(monitor.pid()).unwrap_or(0),
            cgroup: spec.cgroup.as_str().to_string(),
            log_dir: dir,
        };
        Ok((
            self.watch_monitor(monitor, record.clone(), spec.cgroup),
            record,
        ))
    }

    /// Takes a detached process of an earlier daemon back under supervision,
    /// or reports how it ended.
    pub async fn adopt(&self, record: &DetachedRecord) -> Adopted {
        let cgroup = match CgroupPath::new(&record.cgroup) {
            Ok(c) => c,
            Err(e) => {
                return Adopted::Ended(Err(ProcessError::Cgroup {
                    path: record.cgroup.clone(),
                    source: e,
                }))
            }
        };
        // A monitor that wrote the end marker has seen its workload end,
        // even if it lingers (a zombie not yet reaped by its new parent).
        if EndMarker::read(&record.log_dir).is_none() {
            if let Some(monitor) = open_if_same(record) {
                return Adopted::Running(self.watch_monitor(monitor, record.clone(), cgroup));
            }
        }
        Adopted::Ended(self.collect(record, &cgroup, false).await)
    }

    async fn start_monitor(
        &self,
        spec: &ProcessSpec,
        dir: &Path,
        identity: Option<Identity>,
    ) -> Result<(ChildExit, i32), String> {
        let limits = self.logs.limits();
        let monitor_spec = MonitorSpec {
            argv: spec.argv.clone(),
            cgroup: spec.cgroup.as_str().to_string(),
            log_dir: dir.to_path_buf(),
            max_segment_bytes: limits.max_segment_bytes,
            max_segments: limits.max_segments,
            identity,
        };
        let json = serde_json::to_string(&monitor_spec).map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.monitor_exe)
            .arg("monitor")
            .arg(json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the monitor {}: {e}",
                    self.monitor_exe.display()
                )
            })?;
        let monitor_pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
        // Not kill-on-drop: the monitor must outlive this daemon.
        let monitor =
            ChildExit::open(monitor_pid).map_err(|e| format!("pidfd of the monitor: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            return Err("the monitor has no stdout".into());
        };
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(MONITOR_START_TIMEOUT, read).await {
            Ok(Ok(Ok(line))) => line,
            Ok(Ok(Err(e))) => return Err(format!("reading the monitor's reply: {e}")),
            Ok(Err(e)) => return Err(format!("reading the monitor's reply: {e}")),
            Err(_) => {
                let _ = monitor.signal(libc::SIGKILL);
                let _ = monitor.wait_exited().await;
                return Err("the monitor did not report the process in time".into());
            }
        };
        let reply: MonitorReply = match serde_json::from_str(line.trim()) {
            Ok(r) => r,
            Err(_) => {
                let _ = monitor.wait_exited().await;
                return Err(format!(
                    "the monitor failed before starting the process: {:?}",
                    line.trim()
                ));
            }
        };
        match (reply.pid, reply.error) {
            (Some(pid), _) => Ok((monitor, pid)),
            (None, why) => {
                let _ = monitor.wait_exited().await;
                Err(why.unwrap_or_else(|| "the monitor reported no pid".into()))
            }
        }
    }

    fn watch_monitor(
        &self,
        monitor: ChildExit,
        record: DetachedRecord,
        cgroup: CgroupPath,
    ) -> ProcessHandle {
        let (stop, abandon) = (CancellationToken::new(), CancellationToken::new());
        let this = self.clone();
        let (token, left) = (stop.clone(), abandon.clone());
        let pid = record.pid;
        self.running.fetch_add(1, Ordering::Relaxed);
        let done = tokio::spawn(async move {
            let stopped = tokio::select! {
                _ = left.cancelled() => {
                    this.running.fetch_sub(1, Ordering::Relaxed);
                    return Err(ProcessError::Abandoned { pid });
                }
                r = monitor.wait_exited() => {
                    if let Err(e) = r {
                        tracing::warn!(pid, error = %e, "waiting for a monitor");
                    }
                    false
                }
                _ = token.cancelled() => {
                    // SIGTERM, grace, SIGKILL to the workload's cgroup; the
                    // monitor then sees its exit and records it.
                    if let Err(e) = terminate(&this.cgroups, &cgroup, this.grace, &monitor).await {
                        tracing::warn!(pid, error = %e, "stopping a detached process");
                    }
                    true
                }
            };
            let result = this.collect(&record, &cgroup, stopped).await;
            this.running.fetch_sub(1, Ordering::Relaxed);
            result
        });
        ProcessHandle::detached(pid, stop, abandon, done)
    }

    /// After the monitor is gone: the exit from the log's end marker, what
    /// is left of the cgroup killed and removed, the log counted complete.
    async fn collect(
        &self,
        record: &DetachedRecord,
        cgroup: &CgroupPath,
        stopped: bool,
    ) -> Result<Finished, ProcessError> {
        let (cgroups, cgroup, dir) = (self.cgroups.clone(), cgroup.clone(), record.log_dir.clone());
        let logs = self.logs.clone();
        let pid = record.pid;
        let (end, oom_killed) = tokio::task::spawn_blocking(move || {
            let oom_killed = super::supervise::oom_killed(cgroups.as_ref(), &cgroup);
            if let Err(e) = cgroups.kill_all(&cgroup).and_then(|_| cgroups.remove(&cgroup)) {
                tracing::warn!(cgroup = cgroup.as_str(), error = %e, "removing a detached process's cgroup");
            }
            let end = EndMarker::read(&dir).unwrap_or_else(|| {
                let end = end_marker(
                    None,
                    "its monitor died before the process ended: the exit status is unknown".into(),
                );
                if dir.is_dir() {
                    let _ = end.write(&dir);
                }
                end
            });
            logs.complete(&dir, None);
            (end, oom_killed)
        })
        .await
        .map_err(|e| ProcessError::Lost {
            pid,
            why: e.to_string(),
        })?;
        let exit = match (end.code, end.signal) {
            (Some(c), _) => ExitKind::Code(c),
            (None, Some(s)) => ExitKind::Signal(s),
            (None, None) => {
                return Err(ProcessError::Lost {
                    pid,
                    why: end.message,
                })
            }
        };
        Ok(Finished {
            pid,
            exit,
            log_dir: record.log_dir.clone(),
            stopped,
            oom_killed,
            // The monitor wrote the log: read it to know.
            logged_bytes: None,
        })
    }
}

/// A pidfd of the record's monitor if it is still the same process.
fn open_if_same(record: &DetachedRecord) -> Option<ChildExit> {
    if record.monitor_pid <= 0 || start_time(record.monitor_pid)? != record.monitor_start {
        return None;
    }
    let monitor = ChildExit::open(record.monitor_pid).ok()?;
    // Checked again with the pidfd held: the pid cannot be reused now.
    (start_time(record.monitor_pid)? == record.monitor_start).then_some(monitor)
}

/// Field 22 of /proc/PID/stat: the start time in clock ticks since boot,
/// for a process that has not exited (a zombie has none here).
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    start_time_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time from the text of a /proc/PID/stat file (see `start_time`).
pub(crate) fn start_time_in(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_identifies_this_process() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("own start time");
        assert!(t > 0);
        assert_eq!(start_time(me), Some(t));
        assert_eq!(start_time(i32::MAX), None);
    }
}
