//! cells.Cells/Exec: one command in a running container, through the
//! `auraed container-exec` helper (`exec_helper`), which the daemon starts
//! in the container's cgroups (every hierarchy the container is in) and
//! which joins the container's namespaces itself. The command takes the
//! user, groups, capabilities, environment and working directory of the
//! container's process from its bundle's config.json.
//!
//! Its output goes into a log of its own (GetSubProcessStream on the
//! helper's pid) and comes back bounded, as RunExecutable's. A timeout,
//! or a dropped call, kills the helper and, with it, the command.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libcontainer::oci_spec::runtime::Spec;
use nix::fcntl::OFlag;
use tokio_util::sync::CancellationToken;

use super::core::{Entry, Inner};
use super::error::CellError;
use super::exec_helper::ExecSpec;
use crate::error_chain::chain;
use crate::executables::{parse_command, RESPONSE_OUTPUT_LIMIT};
use crate::logs::{read_output, Kind};
use crate::process::{
    blocking_io, launch_with, open_log, open_placement, start_time, ChildExit, ExitKind, OutputLog,
};
use crate::validation::validate_name;
use crate::workload::Status as MetaStatus;

/// A command to run in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub cell: String,
    pub container: String,
    /// Split like RunExecutable's command.
    pub command: String,
    /// Killed after this long; `None`: only a dropped call ends it early.
    pub timeout: Option<Duration>,
    /// Who asked (the client certificate's identity), for the audit trail.
    pub caller: String,
}

/// How the command ended: `exit_code` is 128 + the signal when one ended
/// it, 126 when it could not run, 127 when it does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub pid: i32,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// The running container `container` of `entry`: its init pid, or why not.
fn running_init(entry: &Entry, container: &str) -> Result<i32, CellError> {
    let (status, pid, message) =
        entry
            .container_view(container)
            .ok_or_else(|| CellError::NoSuchContainer {
                cell: entry.name.clone(),
                container: container.to_string(),
            })?;
    match pid {
        Some(pid) if status == MetaStatus::Active && !entry.stop.is_cancelled() => Ok(pid),
        _ => Err(CellError::NotRunning {
            cell: entry.name.clone(),
            container: container.to_string(),
            state: if entry.stop.is_cancelled() {
                "the cell is stopping".to_string()
            } else {
                message
            },
        }),
    }
}

/// What the helper needs from the container's runtime spec.
fn exec_spec(
    config: &Path,
    init_pid: i32,
    init_start: u64,
    argv: Vec<Vec<u8>>,
) -> Result<ExecSpec, CellError> {
    let spec = Spec::load(config)
        .map_err(|e| CellError::io("reading", config, std::io::Error::other(e.to_string())))?;
    let process = spec.process().clone().unwrap_or_default();
    let user = process.user();
    Ok(ExecSpec {
        init_pid,
        init_start,
        argv,
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().to_string_lossy().into_owned(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        capabilities: process.capabilities().clone(),
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
    })
}

pub(crate) async fn exec(inner: &Arc<Inner>, req: ExecRequest) -> Result<ExecResult, CellError> {
    validate_name("cell", &req.cell).map_err(CellError::CellName)?;
    validate_name("container", &req.container).map_err(CellError::ExecContainerName)?;
    let argv: Vec<Vec<u8>> = parse_command(&req.command)
        .map_err(CellError::Command)?
        .into_iter()
        .map(std::os::unix::ffi::OsStringExt::into_vec)
        .collect();
    let entry = inner.entry(&req.cell).ok_or_else(|| CellError::NotFound {
        cell: req.cell.clone(),
    })?;
    let init = running_init(&entry, &req.container)?;
    let bundle = inner
        .cell_dir(&req.cell)
        .join("containers")
        .join(&req.container);
    let config = bundle.join("config.json");
    // Taken now, while List says the container runs: the helper joins
    // this very process or none.
    let start = start_time(init).ok_or_else(|| CellError::NotRunning {
        cell: req.cell.clone(),
        container: req.container.clone(),
        state: "its init process has ended".into(),
    })?;
    let spec = blocking_io(|| exec_spec(&config, init, start, argv))?;
    let json = serde_json::to_string(&spec).map_err(|e| CellError::Task(e.to_string()))?;
    let procs = inner.cgroups.procs_files(&req.cell, &req.container)?;
    let procs = blocking_io(|| open_placement(&procs))
        .map_err(|e| CellError::Exec(format!("opening the container's cgroup: {e}")))?;
    let procs: Vec<_> = procs.iter().map(|fd| fd.as_fd()).collect();
    let exe = inner.processes.exe().to_path_buf();
    let logs = inner.processes.logs().clone();
    let name = format!("{}.{}", req.cell, req.container);
    let (dir, writer) = open_log(&logs, Kind::Exec, &name)
        .map_err(|e| CellError::Exec(format!("creating the exec log: {e}")))?;
    // The spec on a pipe, not on the command line: the container's
    // environment may hold secrets, and any host user can read a cmdline.
    let argv = vec![exe.clone().into(), "container-exec".into()];
    let pipe = || {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| CellError::Exec(format!("creating a pipe: {e}")))
    };
    let ((spec_r, spec_w), (out_r, out_w), (err_r, err_w)) = (pipe()?, pipe()?, pipe()?);
    let (pid, pidfd) =
        match blocking_io(|| launch_with(&argv, &procs, [spec_r, out_w, err_w], None)) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(CellError::Exec(format!(
                    "starting the exec helper {}: {e}",
                    exe.display()
                )));
            }
        };
    // Owns the helper from here: dropping it (a cancelled call) kills it.
    let child = ChildExit::from_pidfd(pid, pidfd)
        .map_err(|e| CellError::Exec(format!("watching the exec helper: {e}")))?;
    let mut output = OutputLog::start(&logs, pid, writer, out_r, err_r)
        .map_err(|e| CellError::io("reading the output of the exec helper into", &dir, e))?;
    // The helper reads it all before anything else; a helper that died
    // early closes the pipe, and its exit says the rest.
    let written = tokio::task::spawn_blocking(move || {
        std::io::Write::write_all(&mut std::fs::File::from(spec_w), json.as_bytes())
    });
    if let Ok(Err(e)) = output.alongside(written).await {
        tracing::debug!(pid, error = %e, "writing the exec spec");
    }
    tracing::info!(kind = "cell-exec", cell = %req.cell, container = %req.container, pid, command = %req.command, caller = %req.caller, "workload started");
    // In a task of its own, so that a dropped call (cancel, deadline) still
    // kills the helper, reaps it and completes its log.
    let dropped = CancellationToken::new();
    let _kill_on_drop = dropped.clone().drop_guard();
    let task = tokio::spawn(wait_and_close(child, output, req, dropped));
    let (exit, timed_out) = task.await.map_err(|e| CellError::Task(e.to_string()))??;
    let text = tokio::task::spawn_blocking(move || read_output(&dir, RESPONSE_OUTPUT_LIMIT))
        .await
        .map_err(|e| CellError::Task(e.to_string()))?
        .unwrap_or_else(|e| crate::logs::OutputText {
            stdout: String::new(),
            stderr: format!("[aurae: the output log could not be read: {}]", chain(&e)),
        });
    Ok(ExecResult {
        pid,
        exit_code: exit.code(),
        stdout: text.stdout,
        stderr: text.stderr,
        timed_out,
    })
}

/// Waits for the helper (killing it at the timeout or when the call is
/// dropped), logs the end and closes its log. Returns how it ended and
/// whether the timeout killed it.
async fn wait_and_close(
    child: ChildExit,
    mut output: OutputLog,
    req: ExecRequest,
    dropped: CancellationToken,
) -> Result<(ExitKind, bool), CellError> {
    let began = Instant::now();
    let pid = child.pid();
    let timeout = async {
        match req.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let ended = async {
        tokio::select! {
            exit = child.wait() => (exit, None),
            _ = timeout => (kill(&child).await, Some(format!("killed after the timeout of {:?}", req.timeout.unwrap_or_default()))),
            _ = dropped.cancelled() => (kill(&child).await, Some("killed: the call was cancelled".to_string())),
        }
    };
    let (exit, why) = output.alongside(ended).await;
    let exit = exit.map_err(|e| CellError::Exec(format!("waiting for the exec helper: {e}")))?;
    let timed_out = why.is_some();
    let message = why.unwrap_or_else(|| exit.describe());
    tracing::info!(kind = "cell-exec", cell = %req.cell, container = %req.container, pid, caller = %req.caller, exit = %message, duration_ms = began.elapsed().as_millis() as u64, "workload ended");
    let drained = output.drain().await;
    let logs = drained.logs().clone();
    let (_, evicted) = drained.finish(Some(exit), message);
    if !evicted.is_empty() {
        tokio::task::spawn_blocking(move || logs.remove_old(evicted));
    }
    Ok((exit, timed_out))
}

async fn kill(child: &ChildExit) -> std::io::Result<ExitKind> {
    let _ = child.signal(libc::SIGKILL);
    child.wait().await
}
