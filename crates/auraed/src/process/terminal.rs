//! Keeping the terminal a daemon may have been started from away from its
//! workloads, without a session per workload.
//!
//! A workload must not receive a terminal's Ctrl-C aimed at the daemon, nor
//! be able to open that terminal. `setsid` in every child gives both, but
//! on kernels with `CONFIG_SCHED_AUTOGROUP` (Debian's among them) each new
//! session also creates a scheduler task group, allocated at the start and
//! freed through RCU at the end: a measurable share of a short run. So the
//! daemon drops its controlling terminal once, at start, and each workload
//! only takes a process group of its own (terminal signals go to the
//! foreground process group, which stays the daemon's). Only a daemon that
//! leads the terminal's session, where dropping it would hang up the
//! foreground group, keeps giving each workload a session. Helpers that
//! outlive the daemon (a detached cell's `auraed container`) still get a
//! session: they start once per container, not once per run.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

static CHILD_SESSIONS: AtomicBool = AtomicBool::new(false);

/// Whether a child must take a session of its own to be rid of the
/// daemon's controlling terminal (see the module comment).
pub(crate) fn children_need_a_session() -> bool {
    CHILD_SESSIONS.load(Ordering::Relaxed)
}

/// What the daemon did about its controlling terminal, for its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// It had none (a service manager, a pipe, a pod).
    None,
    /// It had one and let it go.
    Dropped,
    /// It leads the terminal's session and keeps it: children take sessions.
    Kept,
}

/// Lets go of the daemon's controlling terminal, if it has one; call once
/// at start, before any workload. Decides how children are kept from it.
pub fn detach_controlling_terminal() -> Terminal {
    let terminal = detach(&KernelTty::open());
    CHILD_SESSIONS.store(terminal == Terminal::Kept, Ordering::Relaxed);
    terminal
}

/// The kernel calls, behind a trait so the decision is tested without a terminal.
trait Tty {
    /// Whether this process has a controlling terminal.
    fn has_controlling_terminal(&self) -> bool;
    fn leads_its_session(&self) -> bool;
    /// TIOCNOTTY on the controlling terminal.
    fn let_go(&self) -> std::io::Result<()>;
}

fn detach(tty: &dyn Tty) -> Terminal {
    if !tty.has_controlling_terminal() {
        return Terminal::None;
    }
    if tty.leads_its_session() {
        return Terminal::Kept;
    }
    match tty.let_go() {
        Ok(()) => Terminal::Dropped,
        Err(_) => Terminal::Kept,
    }
}

/// The controlling terminal, opened once, if there is one.
struct KernelTty(Option<std::fs::File>);

impl KernelTty {
    fn open() -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        // /dev/tty opens the caller's controlling terminal, or fails (ENXIO) without one.
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open("/dev/tty");
        Self(tty.ok())
    }
}

impl Tty for KernelTty {
    fn has_controlling_terminal(&self) -> bool {
        self.0.is_some()
    }

    fn leads_its_session(&self) -> bool {
        nix::unistd::getsid(None).is_ok_and(|sid| sid == nix::unistd::getpid())
    }

    fn let_go(&self) -> std::io::Result<()> {
        let Some(tty) = &self.0 else {
            return Ok(());
        };
        // SAFETY: TIOCNOTTY takes no argument; the fd is open.
        if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCNOTTY) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        tty: bool,
        leader: bool,
        fails: bool,
    }

    impl Tty for Fake {
        fn has_controlling_terminal(&self) -> bool {
            self.tty
        }
        fn leads_its_session(&self) -> bool {
            self.leader
        }
        fn let_go(&self) -> std::io::Result<()> {
            if self.fails {
                Err(std::io::Error::from_raw_os_error(libc::ENOTTY))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn children_take_a_session_only_when_the_terminal_cannot_be_dropped() {
        let case = |tty, leader, fails| detach(&Fake { tty, leader, fails });
        assert_eq!(case(false, true, false), Terminal::None);
        assert_eq!(case(true, false, false), Terminal::Dropped);
        assert_eq!(case(true, true, false), Terminal::Kept);
        assert_eq!(case(true, false, true), Terminal::Kept);
    }
}
