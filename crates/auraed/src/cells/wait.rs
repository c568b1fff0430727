//! Waiting for a container's init process, a child of the daemon, through a
//! pidfd: readable once it exits, never confused with a reused pid, and
//! reaped with waitid(P_PIDFD) so nobody else's children are touched.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::process::ExitKind;

pub(crate) struct ChildExit {
    pid: i32,
    fd: AsyncFd<OwnedFd>,
}

impl ChildExit {
    /// A pidfd for `pid`, which must be an unreaped child of this process.
    pub fn open(pid: i32) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags, no pointers.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd_open returned a bad fd"))?;
        // SAFETY: the kernel just returned this fd (close-on-exec) and nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `owned` is an open fd that the AsyncFd owns, never replaced
        // or closed before the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { pid, fd })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the process itself (not its cgroup).
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
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
        loop {
            if let Some(exit) = self.try_reap()? {
                return Ok(exit);
            }
            let mut ready = self.fd.readable().await?;
            ready.clear_ready();
        }
    }

    /// Reaps the process if it has exited.
    fn try_reap(&self) -> io::Result<Option<ExitKind>> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
        match waitid(Id::PIDFd(self.fd.get_ref().as_fd()), flags) {
            Ok(WaitStatus::Exited(_, code)) => Ok(Some(ExitKind::Code(code))),
            Ok(WaitStatus::Signaled(_, signal, _)) => Ok(Some(ExitKind::Signal(signal as i32))),
            Ok(_) => Ok(None),
            Err(e) => Err(io::Error::from(e)),
        }
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
