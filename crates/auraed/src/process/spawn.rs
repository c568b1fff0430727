//! Starting a process: its cgroup first, then a vfork-style clone, placement
//! into the cgroup before exec (so no descendant can escape it), then exec.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::capture::pump;
use super::error::ProcessError;
use super::pidfd::ChildExit;
use super::supervise::{supervise, ProcessHandle, Supervised};
use super::vfork;
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
        let child = match self.start(&spec) {
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

    /// Clones the child into its cgroup with /dev/null as stdin and pipes
    /// for stdout and stderr (see `vfork` for why not `Command`).
    fn start(&self, spec: &ProcessSpec) -> std::io::Result<Started> {
        let path = vfork::resolve(&spec.argv[0], std::env::var_os("PATH").as_deref())?;
        let argv = spec
            .argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let envp = vfork::environment();
        let procs: Vec<CString> = self
            .cgroups
            .procs_files(&spec.cgroup)
            .iter()
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect();
        // Every fd is close-on-exec, so a concurrent spawn elsewhere in the
        // daemon cannot inherit them; dup2 in the child clears it on 0-2.
        let stdin = vfork::above_stdio(std::fs::File::open("/dev/null")?.into())?;
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (out_w, err_w) = (vfork::above_stdio(out_w)?, vfork::above_stdio(err_w)?);
        let (pid, pidfd) = vfork::spawn_into(
            &path,
            &argv,
            &envp,
            &procs,
            [stdin.as_fd(), out_w.as_fd(), err_w.as_fd()],
        )?;
        // Take ownership of the child first, so any later error still kills and reaps it.
        let exit = ChildExit::from_pidfd(pid, pidfd)?;
        // Only the child keeps the write ends: EOF comes when it (and its descendants) are done.
        drop((stdin, out_w, err_w));
        Ok(Started {
            pid,
            exit,
            stdout: receiver(out_r)?,
            stderr: receiver(err_r)?,
        })
    }

    fn supervise_child(
        &self,
        started: Started,
        spec: ProcessSpec,
    ) -> Result<ProcessHandle, ProcessError> {
        let Started {
            pid,
            exit: child,
            stdout,
            stderr,
        } = started;
        let output = self.outputs.register(pid);
        let stdout = Some(tokio::spawn(pump(
            stdout,
            output.clone(),
            Channel::Stdout,
            spec.capture_limit,
        )));
        let stderr = Some(tokio::spawn(pump(
            stderr,
            output.clone(),
            Channel::Stderr,
            spec.capture_limit,
        )));
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

/// A child that has exec'd, with the daemon's ends of its output pipes.
struct Started {
    pid: i32,
    exit: ChildExit,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
}

fn receiver(fd: OwnedFd) -> std::io::Result<pipe::Receiver> {
    pipe::Receiver::from_owned_fd(fd)
}
