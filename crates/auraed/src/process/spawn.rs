//! Starting a process: its cgroup first, then fork, placement into the
//! cgroup before exec (so no descendant can escape it), then exec.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::capture::pump;
use super::error::ProcessError;
use super::supervise::{supervise, ProcessHandle, Supervised};
use crate::cgroups::{CgroupDriver, CgroupPath};
use crate::observe::{Channel, ProcessOutputs};

/// What to run and where.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Program and arguments; the program is looked up in `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// The process's own cgroup; created here, removed when the process is done.
    pub cgroup: CgroupPath,
    /// Bytes of each of stdout and stderr kept for the caller (the stream always has all).
    pub capture_limit: usize,
}

/// The process layer shared by every workload kind.
#[derive(Clone)]
pub struct Processes {
    cgroups: Arc<dyn CgroupDriver>,
    outputs: Arc<ProcessOutputs>,
    grace: Duration,
    /// Cancelled at daemon shutdown: every supervised process is then stopped.
    shutdown: CancellationToken,
}

impl Processes {
    pub fn new(
        cgroups: Arc<dyn CgroupDriver>,
        outputs: Arc<ProcessOutputs>,
        grace: Duration,
    ) -> Self {
        Self {
            cgroups,
            outputs,
            grace,
            shutdown: CancellationToken::new(),
        }
    }

    pub fn cgroups(&self) -> &Arc<dyn CgroupDriver> {
        &self.cgroups
    }

    pub fn outputs(&self) -> &Arc<ProcessOutputs> {
        &self.outputs
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Stops every process started through this layer (SIGTERM, grace, SIGKILL).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Starts `spec`; the returned handle yields the result once the process
    /// has exited, the rest of its cgroup is killed and its output drained.
    pub fn spawn(&self, spec: ProcessSpec) -> Result<ProcessHandle, ProcessError> {
        let program = spec.argv.first().ok_or(ProcessError::EmptyCommand)?.clone();
        let cgroup_err = |source| ProcessError::Cgroup {
            path: spec.cgroup.as_str().to_string(),
            source,
        };
        self.cgroups.create(&spec.cgroup).map_err(cgroup_err)?;
        let child = match self.command(&spec).spawn() {
            Ok(c) => c,
            Err(source) => {
                if let Err(e) = self.cgroups.remove(&spec.cgroup) {
                    tracing::warn!(cgroup = spec.cgroup.as_str(), error = %e, "removing cgroup of a failed start");
                }
                return Err(ProcessError::Start { program, source });
            }
        };
        self.supervise_child(child, spec)
    }

    fn command(&self, spec: &ProcessSpec) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let procs: Vec<CString> = self
            .cgroups
            .procs_files(&spec.cgroup)
            .iter()
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect();
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe calls (setsid, open, write, close) on
        // memory prepared before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || enter_cgroup_and_session(&procs));
        }
        cmd
    }

    fn supervise_child(
        &self,
        mut child: tokio::process::Child,
        spec: ProcessSpec,
    ) -> Result<ProcessHandle, ProcessError> {
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return Err(ProcessError::SupervisorGone { pid: 0 });
        };
        let output = self.outputs.register(pid);
        let stdout = child
            .stdout
            .take()
            .map(|p| tokio::spawn(pump(p, output.clone(), Channel::Stdout, spec.capture_limit)));
        let stderr = child
            .stderr
            .take()
            .map(|p| tokio::spawn(pump(p, output.clone(), Channel::Stderr, spec.capture_limit)));
        let stop = self.shutdown.child_token();
        let done = tokio::spawn(supervise(Supervised {
            pid,
            child,
            cgroup: spec.cgroup,
            cgroups: self.cgroups.clone(),
            outputs: self.outputs.clone(),
            output,
            stdout,
            stderr,
            grace: self.grace,
            stop: stop.clone(),
        }));
        Ok(ProcessHandle::new(pid, stop, done))
    }
}

/// Runs in the child between fork and exec.
fn enter_cgroup_and_session(procs: &[CString]) -> std::io::Result<()> {
    // A session of its own: a terminal's Ctrl-C aimed at the daemon must not
    // reach workloads, which are stopped in order instead.
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    for path in procs {
        // SAFETY: `path` is a valid NUL-terminated string owned by the caller.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Writing "0" to cgroup.procs moves the writing process itself.
        // SAFETY: fd is open and the buffer is a 1-byte static.
        let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        let err = std::io::Error::last_os_error();
        // SAFETY: fd was opened above and is closed once.
        unsafe { libc::close(fd) };
        if n < 0 {
            return Err(err);
        }
    }
    Ok(())
}
