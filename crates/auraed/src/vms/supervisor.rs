//! One task per running VM: waits for its hypervisor, stops it gracefully
//! on request (ACPI power button, then QMP `quit`, then SIGTERM/SIGKILL to
//! its cgroup), records a guest's power-off (`STATUS_COMPLETE`, stays off),
//! and boots a hypervisor that died again with the schedule's backoff and
//! start limit.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ctx::Ctx;
use super::qmp::Qmp;
use super::store::{VmRecord, Want};
use crate::process::{ExitKind, Finished, ProcessError, ProcessHandle};
use crate::schedule::{Backoff, StartLimit, START_LIMIT_BURST, START_LIMIT_INTERVAL};
use crate::workload::Status;

/// How long QEMU may take to exit after QMP `quit`.
const QUIT_WAIT: Duration = Duration::from_secs(5);

/// What List shows of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmState {
    pub status: Status,
    /// 0 when not running.
    pub pid: i32,
    pub message: String,
}

pub type SharedState = Arc<Mutex<VmState>>;

pub fn lock(state: &SharedState) -> MutexGuard<'_, VmState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn set(state: &SharedState, status: Status, pid: i32, message: impl Into<String>) {
    let mut s = lock(state);
    s.status = status;
    s.pid = pid;
    s.message = message.into();
}

pub struct Supervisor {
    stop: CancellationToken,
    detach: CancellationToken,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Supervises `name`; `handle` is its running hypervisor, or `None` to
    /// boot one first (after a death while the daemon was down).
    pub fn start(
        ctx: Arc<Ctx>,
        name: String,
        record: VmRecord,
        state: SharedState,
        handle: Option<ProcessHandle>,
    ) -> Self {
        let (stop, detach) = (CancellationToken::new(), CancellationToken::new());
        let task = tokio::spawn(supervise(
            ctx,
            name,
            record,
            state,
            handle,
            (stop.clone(), detach.clone()),
        ));
        Self { stop, detach, task }
    }

    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the VM (graceful, then forced) and returns once it is off and recorded.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "vm supervisor task failed");
        }
    }

    /// Lets go of the VM, leaving it running for the next daemon.
    pub async fn detach(self) {
        self.detach.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "vm supervisor task failed");
        }
    }
}

async fn supervise(
    ctx: Arc<Ctx>,
    name: String,
    mut record: VmRecord,
    state: SharedState,
    mut handle: Option<ProcessHandle>,
    (stop, detach): (CancellationToken, CancellationToken),
) {
    let name = name.as_str();
    let mut backoff = Backoff::default();
    let mut limit = StartLimit::default();
    if handle.is_some() {
        limit.try_start(Instant::now());
    }
    loop {
        let h = match handle.take() {
            Some(h) => h,
            None => {
                if !limit.try_start(Instant::now()) {
                    let why = format!(
                        "start limit hit: {START_LIMIT_BURST} boots within {}s; last: {}",
                        START_LIMIT_INTERVAL.as_secs(),
                        lock(&state).message
                    );
                    tracing::error!(kind = "vm", name, reason = %why, "vm failed: not restarting it");
                    record.want = Want::Failed;
                    record.message = why.clone();
                    record.run = None;
                    ctx.release_net(&record).await;
                    ctx.persist(name, &record).await;
                    return set(&state, Status::Error, 0, why);
                }
                match ctx.boot(name, &record).await {
                    Ok((h, run)) => {
                        record.run = Some(run);
                        tracing::info!(kind = "vm", name, pid = h.pid(), "vm hypervisor restarted");
                        h
                    }
                    Err(e) => {
                        let why = format!("could not boot: {e}");
                        tracing::warn!(kind = "vm", name, error = %e, "vm hypervisor could not boot");
                        set(&state, Status::Standby, 0, why);
                        match pause(&stop, &detach, backoff.after_exit(Duration::ZERO)).await {
                            Paused::Elapsed => continue,
                            Paused::Stop => return off(&ctx, name, &mut record, &state).await,
                            Paused::Detach => return,
                        }
                    }
                }
            }
        };
        let pid = h.pid();
        set(&state, Status::Active, pid, "");
        let began = Instant::now();
        let (stop_now, abandon) = (h.stop_token(), h.abandon_token());
        let wait = h.wait();
        tokio::pin!(wait);
        let result = tokio::select! {
            r = &mut wait => r,
            _ = detach.cancelled() => {
                if let Some(a) = abandon {
                    a.cancel();
                }
                let _ = wait.await;
                tracing::info!(kind = "vm", name, pid, "vm left running for the next daemon");
                return;
            }
            _ = stop.cancelled() => {
                let ended = graceful_stop(&ctx, name, &mut wait, &stop_now).await;
                tracing::info!(kind = "vm", name, pid, exit = %describe(&ended), "vm stopped");
                return off(&ctx, name, &mut record, &state).await;
            }
        };
        record.run = None;
        let exit = describe(&result);
        if matches!(
            &result,
            Ok(Finished {
                exit: ExitKind::Code(0),
                ..
            })
        ) {
            tracing::info!(kind = "vm", name, pid, "vm guest powered off");
            record.want = Want::PoweredOff;
            record.message = "the guest powered itself off".into();
            ctx.release_net(&record).await;
            ctx.persist(name, &record).await;
            return set(&state, Status::Complete, 0, record.message.clone());
        }
        ctx.persist(name, &record).await;
        let delay = backoff.after_exit(began.elapsed());
        tracing::warn!(kind = "vm", name, pid, exit = %exit, restart_in_ms = delay.as_millis() as u64, "vm hypervisor died: restarting it");
        set(&state, Status::Standby, 0, format!("hypervisor {exit}"));
        match pause(&stop, &detach, delay).await {
            Paused::Elapsed => {}
            Paused::Stop => return off(&ctx, name, &mut record, &state).await,
            Paused::Detach => return,
        }
    }
}

/// The power button, a bounded wait; QMP `quit`, a bounded wait; then the
/// process layer's SIGTERM/SIGKILL to the cgroup.
async fn graceful_stop<F>(
    ctx: &Ctx,
    name: &str,
    wait: &mut std::pin::Pin<&mut F>,
    stop_now: &CancellationToken,
) -> Result<Finished, ProcessError>
where
    F: std::future::Future<Output = Result<Finished, ProcessError>>,
{
    if let Ok(mut qmp) = Qmp::connect(&ctx.qmp_path(name)).await {
        if qmp.powerdown().await.is_ok() {
            if let Ok(r) = tokio::time::timeout(ctx.stop_timeout, wait.as_mut()).await {
                return r;
            }
            tracing::info!(
                kind = "vm",
                name,
                timeout_s = ctx.stop_timeout.as_secs_f64(),
                "the guest ignored the power button: quitting the hypervisor"
            );
        }
        if qmp.quit().await.is_ok() {
            if let Ok(r) = tokio::time::timeout(QUIT_WAIT, wait.as_mut()).await {
                return r;
            }
        }
    }
    stop_now.cancel();
    wait.as_mut().await
}

/// Recorded as stopped (Stop, or the daemon stopping it at exit).
pub(super) async fn off(ctx: &Ctx, name: &str, record: &mut VmRecord, state: &SharedState) {
    record.want = Want::Stopped;
    record.run = None;
    record.message = "stopped".into();
    ctx.release_net(record).await;
    ctx.persist(name, record).await;
    set(state, Status::Passive, 0, "stopped");
}

fn describe(result: &Result<Finished, ProcessError>) -> String {
    match result {
        Ok(f) => f.exit.describe(),
        Err(e) => format!("lost: {e}"),
    }
}

enum Paused {
    Elapsed,
    Stop,
    Detach,
}

/// Sleeps `delay` unless asked to stop or detach meanwhile.
async fn pause(stop: &CancellationToken, detach: &CancellationToken, delay: Duration) -> Paused {
    tokio::select! {
        _ = tokio::time::sleep(delay) => Paused::Elapsed,
        _ = stop.cancelled() => Paused::Stop,
        _ = detach.cancelled() => Paused::Detach,
    }
}
