//! Container create, the operation's per-container part, and how a
//! container ended, into the cell's record and List. A bound (RunCell)
//! container's helper hands its output to the daemon and kills the
//! container when the daemon goes; a detached one's writes its own log and
//! outlives the daemon (see `runtime`, `helper`).

use std::time::Duration;

use super::core::{Entry, Inner};
use super::runtime::{self, Control, DetachedLog};
use super::setup::{ContainerRun, OOM_KILLED};
use super::store::CellRecord;
use crate::error_chain::chain;
use crate::logs::Kind;
use crate::process::{
    open_log, start_time, Adopted, DetachedRecord, Finished, Held, OutputLog, ProcessError,
    ProcessHandle,
};
use crate::workload::Status as MetaStatus;

/// A created container: its init waits for the start.
pub(super) struct CreatedContainer {
    pub pid: i32,
    /// A detached container's process record, for adoption.
    pub process: Option<DetachedRecord>,
    pub handle: ProcessHandle,
    pub control: Control,
}

/// Container create of `c`. A detached container's helper writes its
/// output to a log of its own and is watched like a monitor from the start
/// (it outlives the daemon); a bound one's output flows through the daemon,
/// and its helper kills the container when the daemon goes.
pub(super) async fn create_one(
    inner: &Inner,
    entry: &Entry,
    c: &ContainerRun,
    within: Duration,
    detached: bool,
) -> Result<CreatedContainer, String> {
    let (processes, cell) = (&inner.processes, entry.name.as_str());
    let log_name = format!("{cell}.{}", c.name);
    let cgroup = inner
        .cgroups
        .container(cell, &c.name)
        .map_err(|e| chain(&e))?;
    let state = inner.cell_dir(cell).join("state");
    if !detached {
        let created =
            runtime::create(processes.exe(), &c.name, &c.dir, &state, within, None).await?;
        let (_, writer) = open_log(processes.logs(), Kind::Cell, &log_name)
            .map_err(|e| format!("creating the container's log: {e}"))?;
        let output = OutputLog::start(
            processes.logs(),
            created.pid,
            writer,
            created.stdout,
            created.stderr,
        )
        .map_err(|e| format!("reading the container's output: {e}"))?;
        let stop = entry.stop.child_token();
        let handle = processes.supervise(
            created.pid,
            created.helper,
            cgroup,
            output,
            stop,
            None,
            Held::default(),
        );
        return Ok(CreatedContainer {
            pid: created.pid,
            process: None,
            handle,
            control: created.control,
        });
    }
    let logs = processes.logs().clone();
    let log_dir = tokio::task::spawn_blocking(move || logs.create(Kind::DetachedCell, &log_name))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("creating the container's log: {e}"))?;
    let created = runtime::create(
        processes.exe(),
        &c.name,
        &c.dir,
        &state,
        within,
        Some(DetachedLog {
            log_dir: &log_dir,
            cgroup: cgroup.as_str(),
            limits: processes.logs().limits(),
        }),
    )
    .await?;
    let helper_pid = created.helper.pid();
    let record = DetachedRecord {
        pid: created.pid,
        monitor_pid: helper_pid,
        monitor_start: start_time(helper_pid).unwrap_or(0),
        cgroup: cgroup.as_str().to_string(),
        log_dir,
    };
    // Watched (and reaped) through the record from now on, as after a restart.
    created.helper.disown();
    if let Err(e) = processes.logs().link_pid(record.pid, &record.log_dir) {
        tracing::warn!(cell, container = %c.name, error = %e, "indexing the container's log by pid");
    }
    match processes.adopt(&record).await {
        Adopted::Running(handle) => Ok(CreatedContainer {
            pid: record.pid,
            process: Some(record),
            handle,
            control: created.control,
        }),
        Adopted::Ended(_) => Err("the container's helper ended before the start".into()),
    }
}

/// Records how container `i` ended, in the record and for List.
pub(super) fn ended(
    entry: &Entry,
    record: &mut CellRecord,
    i: usize,
    finished: Result<Finished, ProcessError>,
) {
    let oom_killed = matches!(&finished, Ok(f) if f.oom_killed);
    let (status, message, code) = match &finished {
        // As Kubernetes' OOMKilled: a failure, whatever the exit code.
        Ok(f) if f.oom_killed => (
            MetaStatus::Error,
            OOM_KILLED.to_string(),
            Some(f.exit.code()),
        ),
        Ok(f) => (MetaStatus::Complete, f.exit.describe(), Some(f.exit.code())),
        Err(e) => (
            MetaStatus::Error,
            format!("lost track of it: {}", chain(e)),
            None,
        ),
    };
    if let Some(c) = record.containers.get_mut(i) {
        tracing::info!(cell = %entry.name, container = %c.name, exit = %message, "container exited");
        c.exit_code = code;
        c.message = message.clone();
        c.oom_killed = oom_killed;
    }
    entry.update(i, |v| {
        v.status = status;
        v.message = message;
        v.exit_code = code;
        v.oom_killed = oom_killed;
    });
}
