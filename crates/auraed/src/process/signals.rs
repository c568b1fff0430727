//! Which signals a new child must set back to their default disposition.
//!
//! A child must not keep an ignored signal (it would pass through exec to
//! the workload) nor, between clone and exec, a handler of the daemon's
//! (it would run on the shared memory). Asking the kernel about every
//! signal in the child is 62 `rt_sigaction` calls, about 15 us on a
//! virtual machine, while the parent waits. So the daemon keeps the set
//! of signals that are not at their default here, read once and again
//! whenever it changes a disposition, and the child resets those only.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};

/// Highest signal number + 1 (the kernel's `_NSIG` is 64).
pub(super) const NSIG: c_int = 65;

/// The size of the kernel's signal set (`_NSIG / 8`) for rt_sig* calls.
pub(super) const KERNEL_SIGSET: usize = 8;

/// Not read yet: reset every signal.
const UNKNOWN: u64 = u64::MAX;

/// Bit `n - 1` is set when signal `n` is caught or ignored in this process.
static NOT_DEFAULT: AtomicU64 = AtomicU64::new(UNKNOWN);

/// The kernel's `struct sigaction` (not glibc's): the handler comes first on
/// every architecture; the rest (flags, restorer, mask) is left zero, and
/// spare room covers the largest layout.
#[repr(C)]
pub(super) struct KernelSigaction {
    pub handler: usize,
    pub rest: [u64; 4],
}

/// The signals a child must reset, as a mask (bit `n - 1` for signal `n`).
pub(super) fn to_reset() -> u64 {
    match NOT_DEFAULT.load(Ordering::Acquire) {
        UNKNOWN => read(),
        mask => mask,
    }
}

/// Reads the dispositions again. Every place that ignores a signal or
/// installs a handler calls it afterwards (`ignore_stop_signals`, the
/// daemon's signal listeners). A handler installed elsewhere (tokio's
/// SIGCHLD, for `tokio::process`) is still replaced by exec itself; it
/// could only run if that signal reached the child before exec, and a
/// SIGCHLD cannot reach a child that has no children.
pub fn changed() {
    read();
}

fn read() -> u64 {
    let mut mask = 0u64;
    for sig in 1..NSIG {
        let mut old = KernelSigaction {
            handler: libc::SIG_DFL,
            rest: [0; 4],
        };
        // SAFETY: rt_sigaction reading into a struct of the kernel's layout
        // (with spare room); invalid numbers fail with EINVAL and stay unset.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<KernelSigaction>(),
                &mut old as *mut KernelSigaction,
                KERNEL_SIGSET,
            )
        };
        if rc == 0 && old.handler != libc::SIG_DFL {
            mask |= 1 << (sig - 1);
        }
    }
    NOT_DEFAULT.store(mask, Ordering::Release);
    mask
}

/// tokio's `signal`, for the daemon's own listeners: it installs a handler,
/// so the set is read again.
pub fn listen(
    kind: tokio::signal::unix::SignalKind,
) -> std::io::Result<tokio::signal::unix::Signal> {
    let listener = tokio::signal::unix::signal(kind);
    changed();
    listener
}

/// The signal numbers of `mask`, lowest first; allocation-free, for the child.
pub(super) fn numbers(mask: u64) -> impl Iterator<Item = c_int> {
    (1..NSIG).filter(move |sig| mask & (1 << (sig - 1)) != 0)
}

/// Ignores SIGUSR2 (unused by the test harness), as the monitor ignores
/// SIGTERM, and reads the set again. Never set back: a test that spawns
/// meanwhile must not see it flip under its snapshot.
#[cfg(test)]
pub(super) fn ignore_sigusr2_for_a_test() {
    // SAFETY: SIG_IGN installs no handler code.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGUSR2,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .expect("ignore SIGUSR2");
    changed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_what_the_process_ignores() {
        ignore_sigusr2_for_a_test();
        let mask = to_reset();
        assert_ne!(
            mask & (1 << (libc::SIGUSR2 - 1)),
            0,
            "an ignored signal is reset"
        );
        // Rust's runtime ignores SIGPIPE before main.
        assert_ne!(mask & (1 << (libc::SIGPIPE - 1)), 0);
        // Nothing in the test process touches SIGWINCH or SIGKILL.
        assert_eq!(
            mask & (1 << (libc::SIGWINCH - 1)),
            0,
            "a default signal is left alone"
        );
        assert_eq!(mask & (1 << (libc::SIGKILL - 1)), 0);
    }

    #[test]
    fn numbers_lists_the_bits() {
        let mask = (1 << (libc::SIGHUP - 1)) | (1 << (libc::SIGTERM - 1)) | (1 << 63);
        assert_eq!(
            numbers(mask).collect::<Vec<_>>(),
            [libc::SIGHUP, libc::SIGTERM, 64]
        );
    }
}
