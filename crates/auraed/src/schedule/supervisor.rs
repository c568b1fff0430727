//! One task per enabled executable, like a systemd unit with
//! `Restart=always`: start it, wait for it, start it again after a backoff,
//! and give up (`STATUS_ERROR`) when it starts too often.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::store::Store;
use crate::cgroups::{CgroupPath, Limits};
use crate::logs::Kind;
use crate::process::{
    Adopted, DetachedRecord, Finished, ProcessError, ProcessHandle, ProcessSpec, Processes,
};
use crate::workload::Status as MetaStatus;

/// Delay before the first restart; it doubles with each consecutive one.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest delay between restarts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A process that ran at least this long resets the backoff.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// At most this many starts ...
pub const START_LIMIT_BURST: usize = 5;
/// ... within this interval; one more and the supervisor gives up.
pub const START_LIMIT_INTERVAL: Duration = Duration::from_secs(10);

/// Exponential restart delay: 100 ms, 200 ms, 400 ms, ... up to 10 s, back
/// to 100 ms after a process that ran for 10 s or more.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The delay before the next start, after a process that ran for `ran`
    /// (zero when it could not start at all).
    pub fn after_exit(&mut self, ran: Duration) -> Duration {
        if ran >= BACKOFF_RESET_AFTER {
            self.next = BACKOFF_START;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

/// systemd's `StartLimitBurst=5` / `StartLimitIntervalSec=10s`.
#[derive(Debug, Clone, Default)]
pub struct StartLimit {
    starts: VecDeque<Instant>,
}

impl StartLimit {
    /// Records a start at `now`; false (nothing recorded) when
    /// [`START_LIMIT_BURST`] starts already happened in the
    /// [`START_LIMIT_INTERVAL`] before `now`.
    pub fn try_start(&mut self, now: Instant) -> bool {
        while let Some(first) = self.starts.front() {
            if now.saturating_duration_since(*first) >= START_LIMIT_INTERVAL {
                self.starts.pop_front();
            } else {
                break;
            }
        }
        if self.starts.len() >= START_LIMIT_BURST {
            return false;
        }
        self.starts.push_back(now);
        true
    }
}

/// What an operator sees of a unit, rendered into `meta.message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub status: MetaStatus,
    /// 0 when not running.
    pub pid: i32,
    /// Starts after the first one.
    pub restarts: u32,
    /// How the last process ended ("" when none has).
    pub last_exit: String,
    /// Why the supervisor gave up, if it did.
    pub error: Option<String>,
}

impl UnitState {
    pub fn new(status: MetaStatus) -> Self {
        Self {
            status,
            pid: 0,
            restarts: 0,
            last_exit: String::new(),
            error: None,
        }
    }

    /// `status=STATUS_ACTIVE pid=1234 restarts=2 last_exit="exited with code 1"`,
    /// plus ` error="..."` when the supervisor gave up. Quoted values use
    /// backslash escapes for `"` and `\`.
    pub fn message(&self) -> String {
        let mut s = format!(
            "status={} pid={} restarts={} last_exit={:?}",
            self.status.as_str_name(),
            self.pid,
            self.restarts,
            self.last_exit
        );
        if let Some(e) = &self.error {
            s.push_str(&format!(" error={e:?}"));
        }
        s
    }
}

/// The shared, lock-protected state of one unit.
pub type SharedState = Arc<Mutex<UnitState>>;

pub fn lock(state: &SharedState) -> MutexGuard<'_, UnitState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What to run for one scheduled executable.
#[derive(Clone)]
pub struct Launch {
    pub name: String,
    pub argv: Vec<std::ffi::OsString>,
    pub cgroup: CgroupPath,
    pub limits: Limits,
    pub user: String,
    pub group: String,
    pub processes: Processes,
    /// Where runs are recorded when processes are detached (started through
    /// a monitor so they outlive the daemon); `None` runs them attached.
    pub runs: Option<Store>,
    /// A run left by an earlier daemon, adopted before anything is started.
    pub adopt: Option<DetachedRecord>,
}

/// A running supervisor task.
pub struct Supervisor {
    stop: CancellationToken,
    detach: CancellationToken,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Starts supervising; the receiver fires once the first start was attempted.
    pub fn start(launch: Launch, state: SharedState) -> (Self, oneshot::Receiver<()>) {
        let (stop, detach) = (CancellationToken::new(), CancellationToken::new());
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(
            launch,
            state,
            Signals {
                stop: stop.clone(),
                detach: detach.clone(),
            },
            first_tx,
        ));
        (Self { stop, detach, task }, first_rx)
    }

    /// False once it gave up (start limit) or was stopped.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the process (SIGTERM to its cgroup, grace, SIGKILL) and returns
    /// when it and the supervisor are gone.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "schedule supervisor task failed");
        }
    }

    /// Ends supervision but leaves a detached process running (and recorded)
    /// for the next daemon to adopt; an attached one is stopped.
    pub async fn detach(self) {
        self.detach.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "schedule supervisor task failed");
        }
    }
}

struct Signals {
    stop: CancellationToken,
    detach: CancellationToken,
}

/// How one run ended, as the supervisor saw it.
enum RunEnd {
    Exited(Result<Finished, ProcessError>),
    Stopped(Result<Finished, ProcessError>),
    Detached,
}

async fn supervise(
    mut launch: Launch,
    state: SharedState,
    signals: Signals,
    first: oneshot::Sender<()>,
) {
    let name = launch.name.clone();
    let name = name.as_str();
    let mut first = Some(first);
    let mut backoff = Backoff::default();
    let mut limit = StartLimit::default();
    let mut starts: u32 = 0;
    loop {
        let adopted = match launch.adopt.take() {
            Some(record) => match launch.processes.adopt(&record).await {
                Adopted::Running(handle) => {
                    tracing::info!(
                        kind = "schedule",
                        name,
                        pid = handle.pid(),
                        "scheduled executable adopted from the previous daemon"
                    );
                    Some(handle)
                }
                Adopted::Ended(result) => {
                    let exit = describe(&result);
                    tracing::warn!(kind = "schedule", name, pid = record.pid, exit = %exit, "scheduled executable ended while the daemon was down");
                    lock(&state).last_exit = format!("{exit} (while the daemon was down)");
                    forget_run(&launch, name).await;
                    None
                }
            },
            None => None,
        };
        let handle = match adopted {
            Some(h) => h,
            None => {
                if !limit.try_start(Instant::now()) {
                    let mut s = lock(&state);
                    let reason = format!(
                        "start limit hit: {START_LIMIT_BURST} starts within {}s; last exit: {}",
                        START_LIMIT_INTERVAL.as_secs(),
                        s.last_exit
                    );
                    tracing::error!(kind = "schedule", name, reason = %reason, "scheduled executable failed: not restarting it");
                    s.status = MetaStatus::Error;
                    s.pid = 0;
                    s.error = Some(reason);
                    return;
                }
                if starts > 0 {
                    lock(&state).restarts = starts;
                }
                starts += 1;
                match start(&launch, name).await {
                    Ok(h) => h,
                    Err(e) => {
                        let exit = format!("could not start: {e}");
                        tracing::warn!(kind = "schedule", name, error = %e, "scheduled executable could not start");
                        {
                            let mut s = lock(&state);
                            s.status = MetaStatus::Standby;
                            s.last_exit = exit;
                        }
                        if let Some(tx) = first.take() {
                            let _ = tx.send(());
                        }
                        if !pause(&signals, backoff.after_exit(Duration::ZERO), name).await {
                            return stopped(&state, name);
                        }
                        continue;
                    }
                }
            }
        };
        let began = Instant::now();
        let pid = handle.pid();
        {
            let mut s = lock(&state);
            s.status = MetaStatus::Active;
            s.pid = pid;
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        let end = wait(handle, &signals).await;
        let ran = began.elapsed();
        let (result, asked) = match end {
            RunEnd::Detached => {
                tracing::info!(
                    kind = "schedule",
                    name,
                    pid,
                    "left running for the next daemon to adopt"
                );
                let mut s = lock(&state);
                s.status = MetaStatus::Passive;
                s.pid = 0;
                return;
            }
            RunEnd::Exited(r) => (r, false),
            RunEnd::Stopped(r) => (r, true),
        };
        forget_run(&launch, name).await;
        let exit = describe(&result);
        let by_shutdown = matches!(&result, Ok(f) if f.stopped) && !asked;
        {
            let mut s = lock(&state);
            s.pid = 0;
            s.status = MetaStatus::Standby;
            s.last_exit = exit.clone();
        }
        if asked || signals.stop.is_cancelled() {
            tracing::info!(kind = "schedule", name, pid, exit = %exit, duration_ms = ran.as_millis() as u64, "scheduled executable stopped");
            return stopped(&state, name);
        }
        if by_shutdown {
            tracing::info!(kind = "schedule", name, pid, exit = %exit, "scheduled executable stopped by daemon shutdown");
            return stopped(&state, name);
        }
        let delay = backoff.after_exit(ran);
        tracing::warn!(
            kind = "schedule",
            name,
            pid,
            exit = %exit,
            ran_ms = ran.as_millis() as u64,
            restart_in_ms = delay.as_millis() as u64,
            "scheduled executable exited: restarting it"
        );
        if !pause(&signals, delay, name).await {
            return stopped(&state, name);
        }
        tracing::info!(
            kind = "schedule",
            name,
            restart = starts,
            "restarting scheduled executable"
        );
    }
}

/// Starts one run: detached (and recorded) or attached.
async fn start(launch: &Launch, name: &str) -> Result<ProcessHandle, ProcessError> {
    let spec = ProcessSpec {
        argv: launch.argv.clone(),
        cgroup: launch.cgroup.clone(),
        kind: Kind::Schedule,
        name: name.to_string(),
        limits: launch.limits,
        user: launch.user.clone(),
        group: launch.group.clone(),
    };
    let handle = match &launch.runs {
        None => launch.processes.spawn(spec)?,
        Some(store) => {
            let (handle, record) = launch.processes.spawn_detached(spec).await?;
            let (store, key) = (store.clone(), name.to_string());
            let saved = tokio::task::spawn_blocking(move || store.put_run(&key, &record)).await;
            if !matches!(saved, Ok(Ok(()))) {
                // Without the record a restarted daemon cannot adopt it: it
                // would find the cgroup and stop it as a leftover instead.
                tracing::warn!(name, "could not record the run in the state database");
            }
            handle
        }
    };
    tracing::info!(kind = "schedule", name, pid = handle.pid(), command = ?launch.argv, cgroup = launch.cgroup.as_str(), "scheduled executable started");
    Ok(handle)
}

async fn wait(handle: ProcessHandle, signals: &Signals) -> RunEnd {
    let stop = handle.stop_token();
    let abandon = handle.abandon_token();
    let wait = handle.wait();
    tokio::pin!(wait);
    tokio::select! {
        r = &mut wait => RunEnd::Exited(r),
        _ = signals.stop.cancelled() => {
            stop.cancel();
            RunEnd::Stopped(wait.await)
        }
        _ = signals.detach.cancelled() => match abandon {
            Some(abandon) => {
                abandon.cancel();
                let _ = wait.await;
                RunEnd::Detached
            }
            None => {
                stop.cancel();
                RunEnd::Stopped(wait.await)
            }
        },
    }
}

async fn forget_run(launch: &Launch, name: &str) {
    let Some(store) = launch.runs.clone() else {
        return;
    };
    let key = name.to_string();
    if !matches!(
        tokio::task::spawn_blocking(move || store.delete_run(&key)).await,
        Ok(Ok(()))
    ) {
        tracing::warn!(name, "could not remove the run from the state database");
    }
}

fn describe(result: &Result<Finished, ProcessError>) -> String {
    match result {
        Ok(f) => f.exit.describe(),
        Err(e) => format!("lost: {e}"),
    }
}

/// Sleeps `delay`; false when asked to stop (or detach) meanwhile.
async fn pause(signals: &Signals, delay: Duration, name: &str) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = signals.detach.cancelled() => false,
        _ = signals.stop.cancelled() => {
            tracing::debug!(name, "supervisor stopped during restart backoff");
            false
        }
    }
}

fn stopped(state: &SharedState, name: &str) {
    let mut s = lock(state);
    s.status = MetaStatus::Passive;
    s.pid = 0;
    tracing::debug!(name, "supervisor ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(5);
        let delays: Vec<u64> = (0..10)
            .map(|_| b.after_exit(quick).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.after_exit(BACKOFF_RESET_AFTER), BACKOFF_START);
        assert_eq!(b.after_exit(Duration::ZERO), Duration::from_millis(200));
        assert_eq!(b.after_exit(Duration::from_secs(60)), BACKOFF_START);
    }

    #[test]
    fn start_limit_allows_a_burst_per_interval() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut l = StartLimit::default();
        // The starts of an always-failing command with the default backoff.
        for t in [0, 100, 300, 700, 1500] {
            assert!(l.try_start(ms(t)), "start at {t} ms");
        }
        assert!(
            !l.try_start(ms(3100)),
            "the sixth start within 10 s is refused"
        );
        assert!(!l.try_start(ms(9999)));
        // Once the first start is 10 s old there is room for one more.
        assert!(l.try_start(ms(10_000)));
        assert!(!l.try_start(ms(10_050)));
    }

    #[test]
    fn slow_restarts_never_hit_the_limit() {
        let t0 = Instant::now();
        let mut l = StartLimit::default();
        for i in 0..100u64 {
            assert!(
                l.try_start(t0 + Duration::from_millis(2_001 * i)),
                "start {i}"
            );
        }
    }

    #[test]
    fn message_format_is_stable() {
        let mut s = UnitState::new(MetaStatus::Active);
        s.pid = 1234;
        s.restarts = 2;
        s.last_exit = "exited with code 1".into();
        assert_eq!(
            s.message(),
            r#"status=STATUS_ACTIVE pid=1234 restarts=2 last_exit="exited with code 1""#
        );
        let mut e = UnitState::new(MetaStatus::Error);
        e.error = Some(r#"start limit hit: could not start "x""#.into());
        assert_eq!(
            e.message(),
            r#"status=STATUS_ERROR pid=0 restarts=0 last_exit="" error="start limit hit: could not start \"x\"""#
        );
    }
}
