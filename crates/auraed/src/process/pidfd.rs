//! Waiting for a child of the daemon through a pidfd: readable once it
//! exits, never confused with a reused pid, and reaped with
//! waitid(P_PIDFD) so nobody else's children are touched. Used for the
//! processes this layer spawns and for containers' init processes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::ExitKind;

/// A pidfd (close-on-exec) for `pid`.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd_open returned a bad fd"))?;
    // SAFETY: the kernel just returned this fd (close-on-exec) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) struct ChildExit {
    pid: i32,
    fd: AsyncFd<OwnedFd>,
    /// Set once waitid has reaped the child: the pidfd then names nobody.
    reaped: AtomicBool,
    /// SIGKILL the child if this is dropped before it was reaped.
    kill_on_drop: bool,
}

impl ChildExit {
    /// A pidfd for `pid`, which must be an unreaped child of this process.
    /// Dropping the result leaves the process alone.
    pub fn open(pid: i32) -> io::Result<Self> {
        Self::new(pid, pidfd_open(pid)?, false)
    }

    /// Takes over `pidfd` (e.g. from clone's CLONE_PIDFD) of the unreaped
    /// child `pid`. Like tokio's `kill_on_drop`, dropping the result before
    /// the child was reaped kills it, so a dropped supervisor leaks nothing.
    pub fn from_pidfd(pid: i32, pidfd: OwnedFd) -> io::Result<Self> {
        Self::new(pid, pidfd, true)
    }

    fn new(pid: i32, owned: OwnedFd, kill_on_drop: bool) -> io::Result<Self> {
        // SAFETY: `owned` is an open fd that the AsyncFd owns, never replaced
        // or closed before the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self {
            pid,
            fd,
            reaped: AtomicBool::new(false),
            kill_on_drop,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Lets the process outlive this handle: dropping it no longer kills
    /// it (a detached container's helper, watched again through its record).
    pub fn disown(mut self) {
        self.kill_on_drop = false;
    }

    /// Sends `signal` to the process itself (not its cgroup).
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a valid pidfd, a null siginfo and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.get_ref().as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the process has exited, reaps it and says how it ended.
    pub async fn wait(&self) -> io::Result<ExitKind> {
        self.wait_exited().await?.ok_or_else(|| {
            io::Error::other(format!("pid {} is not a child of this process", self.pid))
        })
    }

    /// Waits until the process has exited. For a child of this process it
    /// is reaped and its exit returned; for another process (e.g. a
    /// monitor adopted from an earlier daemon) there is no status: `None`.
    pub async fn wait_exited(&self) -> io::Result<Option<ExitKind>> {
        loop {
            let mut ready = self.fd.readable().await?;
            match self.try_reap() {
                Ok(Some(exit)) => return Ok(Some(exit)),
                Ok(None) => ready.clear_ready(),
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    self.reaped.store(true, Ordering::Release);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reaps the process if it has exited.
    fn try_reap(&self) -> io::Result<Option<ExitKind>> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
        let exit = match waitid(Id::PIDFd(self.fd.get_ref().as_fd()), flags) {
            Ok(WaitStatus::Exited(_, code)) => ExitKind::Code(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => ExitKind::Signal(signal as i32),
            Ok(_) => return Ok(None),
            Err(e) => return Err(io::Error::from(e)),
        };
        self.reaped.store(true, Ordering::Release);
        Ok(Some(exit))
    }
}

impl Drop for ChildExit {
    fn drop(&mut self) {
        if !self.kill_on_drop || self.reaped.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.signal(libc::SIGKILL) {
            tracing::warn!(pid = self.pid, error = %e, "killing an unsupervised child");
        }
        // Reap it off the async threads (it dies promptly after SIGKILL), as
        // tokio does for its kill_on_drop children; outside a runtime (the
        // daemon is exiting) it is left to init.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(fd) = self.fd.get_ref().try_clone() else {
            return;
        };
        let pid = self.pid;
        rt.spawn_blocking(move || {
            if let Err(e) = waitid(
                Id::PIDFd(fd.as_fd()),
                WaitPidFlag::WEXITED | WaitPidFlag::__WALL,
            ) {
                tracing::warn!(pid, error = %e, "reaping a killed child");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A child forked with plain fork(2) so that tokio's own reaper never sees it.
    fn fork_child(code: i32, sleep_ms: u32) -> i32 {
        // SAFETY: the child only calls async-signal-safe functions (usleep, _exit).
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: usleep and _exit are async-signal-safe.
                unsafe {
                    libc::usleep(sleep_ms * 1000);
                    libc::_exit(code)
                }
            }
            pid if pid > 0 => pid,
            _ => panic!("fork failed: {}", io::Error::last_os_error()),
        }
    }

    #[tokio::test]
    async fn reports_the_exit_code_of_a_child() {
        let exit = ChildExit::open(fork_child(3, 50)).expect("pidfd");
        let got = tokio::time::timeout(Duration::from_secs(5), exit.wait())
            .await
            .expect("in time")
            .expect("wait");
        assert_eq!(got, ExitKind::Code(3));
    }

    #[tokio::test]
    async fn kills_an_unreaped_child_on_drop_when_asked() {
        let pid = fork_child(0, 10_000);
        // SAFETY: pidfd_open takes a pid and flags, no pointers.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(raw >= 0, "pidfd_open: {}", io::Error::last_os_error());
        // SAFETY: the fd was just returned by the kernel and is owned here only.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let watcher = ChildExit::open(pid).expect("pidfd");
        drop(ChildExit::from_pidfd(pid, fd).expect("adopt"));
        // Either the drop's reaper or this wait reaps it; both see it die.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            // SAFETY: kill with signal 0 only checks for existence.
            let alive = unsafe { libc::kill(pid, 0) } == 0;
            if !alive {
                break;
            }
            if let Ok(Some(exit)) = watcher.try_reap() {
                assert_eq!(exit, ExitKind::Signal(libc::SIGKILL));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child survived the drop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn reports_a_death_by_signal() {
        let exit = ChildExit::open(fork_child(0, 10_000)).expect("pidfd");
        exit.signal(libc::SIGKILL).expect("kill");
        let got = tokio::time::timeout(Duration::from_secs(5), exit.wait())
            .await
            .expect("in time")
            .expect("wait");
        assert_eq!(got, ExitKind::Signal(libc::SIGKILL));
    }
}
