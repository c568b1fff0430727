//! youki's libcontainer, driven in-process: create (the container's init
//! process exists and waits) and start (it execs the workload).
//!
//! `build()` and `start()` change process-wide state: the working directory
//! (for long notify-socket paths), the dumpable flag, and they clone
//! children that run Rust code before exec. So every call goes through one
//! global lock, on a blocking thread (callers use `spawn_blocking`), with
//! tracing switched off for the duration: a cloned child must never wait on
//! a lock (the daemon's log writers) that another thread held at clone time.
//! The dumpable flag is restored afterwards.
//!
//! The init process's parent is the daemon (libcontainer clones it as a
//! sibling of its intermediate process), so the daemon reaps it: see `wait`.

use std::path::Path;
use std::sync::Mutex;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use super::output::{pipes, OutputPipes};
use crate::error_chain::chain;

/// Serialises every libcontainer call that touches process-wide state.
static LIBCONTAINER: Mutex<()> = Mutex::new(());

/// Runs `f` under the global lock, without tracing, restoring the dumpable flag.
fn exclusive<T>(f: impl FnOnce() -> T) -> T {
    let _guard = LIBCONTAINER.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
    let result = tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f);
    if dumpable == 1 {
        // SAFETY: PR_SET_DUMPABLE with 1 takes no pointer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1) };
    }
    result
}

/// Creates container `id` from the bundle (config.json) at `bundle`, with its
/// state under `state_root`. On success the init process exists, placed in
/// its cgroup and namespaces, and waits for [`start`]; the returned pipes
/// carry its stdout and stderr. The pipes are made under the lock, so no
/// other container's clone inherits their write ends.
pub(crate) fn create(
    id: &str,
    bundle: &Path,
    state_root: &Path,
) -> Result<(Container, OutputPipes), String> {
    exclusive(|| {
        let (pipes, stdio) = pipes().map_err(|e| format!("creating output pipes: {e}"))?;
        let container = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_root_path(state_root)
            .map_err(|e| chain(&e))?
            .with_executor(CellExecutor)
            .with_stdin(stdio.stdin)
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr)
            .validate_id()
            .map_err(|e| chain(&e))?
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| chain(&e))?;
        Ok((container, pipes))
    })
}

/// Lets a created container exec its workload.
pub(crate) fn start(container: &mut Container) -> Result<(), String> {
    exclusive(|| container.start().map_err(|e| chain(&e)))
}

/// The default executor (execvp of args in the container), after undoing
/// what the daemon's process state would otherwise leak into the workload:
/// ignored signals (Rust ignores SIGPIPE) and a blocked signal mask.
#[derive(Clone)]
struct CellExecutor;

impl Executor for CellExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals();
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Default disposition for every signal and an empty mask. Runs in the
/// container's single-threaded init process just before exec.
fn reset_signals() {
    for signal in 1..libc::SIGRTMIN() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition for every catchable signal.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: an empty, initialised set; sigprocmask only reads it.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_restores_the_dumpable_flag() {
        // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
        let before = unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
        exclusive(|| {
            // SAFETY: PR_SET_DUMPABLE with 0 takes no pointer arguments.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
        });
        // SAFETY: as above.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE) }, before);
    }
}
