//! Delivering signals to the pids of a cgroup tree: the [`Signaller`] seam
//! (real `kill(2)`, or a recording fake in tests) and the bounded SIGKILL loop
//! both drivers share.

use std::fmt::Debug;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::CgroupError;

/// Sends one signal to one process.
pub trait Signaller: Send + Sync + Debug + 'static {
    fn kill(&self, pid: i32, sig: Signal) -> Result<(), nix::Error>;
}

/// The real thing: `kill(2)` through nix.
#[derive(Debug, Default, Clone, Copy)]
pub struct NixSignaller;

impl Signaller for NixSignaller {
    fn kill(&self, pid: i32, sig: Signal) -> Result<(), nix::Error> {
        // kill(0) and kill(-n) address whole process groups (-1: every process
        // we may signal); a cgroup pid is never one of those.
        if pid <= 0 {
            return Err(Errno::EINVAL);
        }
        nix::sys::signal::kill(Pid::from_raw(pid), sig)
    }
}

/// A fake that records every signal and pretends some pids have already exited.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug, Default)]
pub struct RecordingSignaller {
    sent: std::sync::Mutex<Vec<(i32, Signal)>>,
    gone: Vec<i32>,
}

#[cfg(any(test, feature = "test-support"))]
impl RecordingSignaller {
    pub fn new() -> Self {
        Self::default()
    }

    /// Signals to these pids fail with ESRCH, as if the process had exited.
    pub fn with_gone(gone: &[i32]) -> Self {
        Self {
            sent: Default::default(),
            gone: gone.to_vec(),
        }
    }

    /// Every (pid, signal) delivered so far, in order.
    pub fn sent(&self) -> Vec<(i32, Signal)> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Signaller for RecordingSignaller {
    fn kill(&self, pid: i32, sig: Signal) -> Result<(), nix::Error> {
        if self.gone.contains(&pid) {
            return Err(Errno::ESRCH);
        }
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pid, sig));
        Ok(())
    }
}

/// Signals every pid; ESRCH (already gone) is skipped, any other failure is
/// returned after the remaining pids were still tried. `cgroup` is for messages.
pub(crate) fn signal_pids(
    signaller: &dyn Signaller,
    pids: &[i32],
    signal: Signal,
    cgroup: &Path,
) -> Result<usize, CgroupError> {
    let mut signalled = 0;
    let mut first_error = None;
    for &pid in pids {
        match signaller.kill(pid, signal) {
            Ok(()) => signalled += 1,
            Err(Errno::ESRCH) => {}
            Err(source) => {
                tracing::warn!(
                    pid,
                    %signal,
                    cgroup = %cgroup.display(),
                    error = %source,
                    "cannot signal process"
                );
                first_error.get_or_insert(CgroupError::Signal {
                    pid,
                    signal,
                    path: cgroup.to_path_buf(),
                    source,
                });
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(signalled),
    }
}

/// How long one kill round waits for the tree to drain before killing again.
const ROUND: Duration = Duration::from_millis(50);
const POLL: Duration = Duration::from_millis(2);

/// Repeats `kill_round` until `pids` reports an empty tree, waiting at most
/// `timeout` in total. `cgroup` is for messages.
pub(crate) fn kill_until_empty(
    cgroup: &Path,
    timeout: Duration,
    mut kill_round: impl FnMut() -> Result<(), CgroupError>,
    mut pids: impl FnMut() -> Result<Vec<i32>, CgroupError>,
) -> Result<(), CgroupError> {
    let start = Instant::now();
    let deadline = start + timeout;
    if pids()?.is_empty() {
        return Ok(());
    }
    loop {
        kill_round()?;
        let round_end = (Instant::now() + ROUND).min(deadline);
        loop {
            let left = pids()?;
            if left.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CgroupError::KillTimeout {
                    path: cgroup.to_path_buf(),
                    pids: left,
                    waited: now - start,
                });
            }
            if now >= round_end {
                break;
            }
            thread::sleep(POLL);
        }
    }
}

/// Polls `done` until it returns true or `timeout` passes; returns whether it did.
pub(crate) fn wait_until(
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn signal_pids_counts_delivered_and_skips_exited() {
        let fake = RecordingSignaller::with_gone(&[20]);
        let n =
            signal_pids(&fake, &[10, 20, 30], Signal::SIGTERM, Path::new("/cg")).expect("signal");
        assert_eq!(n, 2);
        assert_eq!(fake.sent(), [(10, Signal::SIGTERM), (30, Signal::SIGTERM)]);
    }

    #[test]
    fn nix_signaller_refuses_process_group_pids() {
        for pid in [0, -1, -42] {
            assert_eq!(NixSignaller.kill(pid, Signal::SIGKILL), Err(Errno::EINVAL));
        }
    }

    #[test]
    fn kill_until_empty_stops_once_the_tree_drains() {
        let rounds = Cell::new(0);
        let polls = Cell::new(0);
        kill_until_empty(
            Path::new("/cg"),
            Duration::from_secs(5),
            || {
                rounds.set(rounds.get() + 1);
                Ok(())
            },
            || {
                polls.set(polls.get() + 1);
                Ok(if polls.get() < 3 { vec![7] } else { vec![] })
            },
        )
        .expect("drains");
        assert_eq!(rounds.get(), 1);
    }

    #[test]
    fn kill_until_empty_skips_an_empty_tree_and_bounds_a_stuck_one() {
        let rounds = Cell::new(0);
        let round = || {
            rounds.set(rounds.get() + 1);
            Ok(())
        };
        kill_until_empty(Path::new("/cg"), Duration::from_secs(5), round, || {
            Ok(vec![])
        })
        .expect("empty");
        assert_eq!(rounds.get(), 0);

        let started = Instant::now();
        let err = kill_until_empty(Path::new("/cg"), Duration::from_millis(120), round, || {
            Ok(vec![7, 8])
        })
        .expect_err("stuck");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            rounds.get() >= 2,
            "kills again after each round: {}",
            rounds.get()
        );
        match err {
            CgroupError::KillTimeout { pids, .. } => assert_eq!(pids, [7, 8]),
            other => panic!("unexpected {other}"),
        }
    }
}
