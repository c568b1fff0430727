//! `auraed container`: the helper process that drives youki's libcontainer
//! for one container, so that libcontainer never runs in the daemon.
//!
//! libcontainer clones children that run Rust code (and allocate) before
//! they exec, and changes process-wide state (the working directory, the
//! dumpable flag). In the multi-threaded daemon a clone can inherit a lock
//! (malloc's, a log writer's) that another thread held at that instant, and
//! the child then waits for it forever. The helper is single-threaded from
//! exec to exit, so nothing it clones can inherit a held lock.
//!
//! Like containerd-shim and conmon, the helper stays the parent of the
//! container's init process for the container's life (libcontainer clones
//! the init as a sibling of its intermediate process, so as a child of the
//! process that calls `build()`): it reaps the init and then ends the same
//! way, with the same exit code or by the same signal, so the daemon learns
//! the container's end by waiting for the helper (a pidfd, as for any
//! other process). A one-shot `create` in the style of `runc create` would
//! leave the init to PID 1, and its exit status with it.
//!
//! Protocol with the daemon, one JSON line each way over the Unix socket on
//! fd 0 (fds 1 and 2 are the container's stdout and stderr pipes):
//! - the helper creates the container and answers `{"created":PID}` (the
//!   init waits) or `{"error":"..."}`;
//! - the daemon writes `start`; the helper lets the init exec the workload
//!   and answers `{"started":true}` or `{"error":"..."}`;
//! - from then on the helper's exit status is the container's.
//!
//! If the daemon's end of the socket closes (the daemon died, or dropped
//! the container), the helper kills the init: a cell is bound to its call.
//!
//! Detached (`--log-dir`, for cells started outside a RunCell call): the
//! helper works like `auraed monitor` once the container runs. It is in a
//! session of its own, holds the container's output pipes itself, writes
//! the output into the log directory and, when the init exits, kills what
//! is left in the container's cgroup and records the exit in the log's end
//! marker. The daemon may go away after the start: the container, its
//! output and its exit status stay, and a restarted daemon adopts the
//! helper as it adopts a monitor (`crate::process::Processes::adopt`).
//! Before the start, a closed socket still kills the init.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use serde::{Deserialize, Serialize};

use crate::cgroups::{CgroupDriver, CgroupPath};
use crate::error_chain::chain;
use crate::logs::{LogLimits, LogWriter};
use crate::process::{
    ignore_stop_signals, pidfd_open, supervise_to_end, wait_child, ExitKind, Started,
};

/// What the helper is told on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct HelperArgs {
    /// libcontainer's state root (one directory per container).
    #[arg(long)]
    pub root: PathBuf,
    /// The container id.
    #[arg(long)]
    pub id: String,
    /// The bundle: config.json and the root filesystem.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Detached: the log directory that receives the container's output
    /// and its end marker.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Detached: the container's cgroup (relative to the cgroup mounts),
    /// emptied when its init exits.
    #[arg(long, requires = "log_dir")]
    pub cgroup: Option<String>,
    /// Detached: the log's segment size and count.
    #[arg(long, default_value_t = LogLimits::default().max_segment_bytes)]
    pub max_segment_bytes: u64,
    #[arg(long, default_value_t = LogLimits::default().max_segments)]
    pub max_segments: usize,
}

/// What a detached helper needs to watch its container after the start.
struct Detached {
    log_dir: PathBuf,
    writer: LogWriter,
    cgroup: CgroupPath,
    driver: Arc<dyn CgroupDriver>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl Detached {
    /// Opens the log and the cgroup and puts pipes of its own on fds 1 and
    /// 2, which the container's init then gets (see `create`).
    fn prepare(args: &HelperArgs, log_dir: &std::path::Path) -> Result<Self, String> {
        let _ = nix::unistd::setsid();
        let limits = LogLimits {
            max_segment_bytes: args.max_segment_bytes,
            max_segments: args.max_segments,
        };
        let writer = LogWriter::open(log_dir, limits)
            .map_err(|e| format!("opening the log {}: {e}", log_dir.display()))?;
        let cgroup = CgroupPath::new(args.cgroup.as_deref().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let driver = crate::cgroups::detect_host().map_err(|e| e.to_string())?;
        let mut ends = Vec::new();
        for fd in [1, 2] {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| format!("creating a pipe: {e}"))?;
            // SAFETY: dup2 onto a standard fd that this process owns.
            if unsafe { libc::dup2(w.as_raw_fd(), fd) } < 0 {
                return Err(format!(
                    "moving a pipe onto fd {fd}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            ends.push(r);
        }
        let (Some(stderr), Some(stdout)) = (ends.pop(), ends.pop()) else {
            return Err("creating the output pipes".into());
        };
        Ok(Self {
            log_dir: log_dir.to_path_buf(),
            writer,
            cgroup,
            driver,
            stdout,
            stderr,
        })
    }

    /// Watches the running container to its end, like `auraed monitor`.
    fn watch(self, pid: i32) -> i32 {
        supervise_to_end(
            &self.log_dir,
            Started {
                pid,
                writer: Arc::new(Mutex::new(self.writer)),
                stdout: self.stdout,
                stderr: self.stderr,
                cgroup: self.cgroup,
                driver: self.driver,
            },
        );
        0
    }
}

/// One line from the helper to the daemon.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The daemon's one command.
pub(crate) const START: &str = "start";

/// Runs the helper; returns only when the container never ran (the exit
/// code for that), otherwise ends the process as the container ended.
pub fn run(args: &HelperArgs) -> i32 {
    ignore_stop_signals();
    // SAFETY: fd 0 is the control socket the daemon passed; nothing else owns it.
    let control = unsafe { OwnedFd::from_raw_fd(0) };
    let Ok(control) = hide_stdio(control) else {
        return 1;
    };
    let mut control = Control::new(UnixStream::from(control));
    let detached = match args.log_dir.as_deref().map(|d| Detached::prepare(args, d)) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return control.fail(e, None),
    };
    let (mut container, pid) = match create(args) {
        Ok(c) => c,
        Err(e) => return control.fail(e, None),
    };
    // The init holds its own copies now: the pipes reach EOF when it is done.
    let _ = null_onto(&[1, 2]);
    let init = match Init::open(pid) {
        Ok(i) => i,
        Err(e) => return control.fail(format!("pidfd_open({pid}): {e}"), Some(pid)),
    };
    control.reply(Reply {
        created: Some(pid),
        ..Default::default()
    });
    match init.until_command(&mut control) {
        Event::Exited(exit) => mirror(exit),
        Event::Command(line) if line == START => {}
        Event::Command(_) | Event::Closed => {
            kill_and_reap(pid);
            return 1;
        }
    }
    if let Err(e) = container.start() {
        return control.fail(chain(&e), Some(pid));
    }
    control.reply(Reply {
        started: Some(true),
        ..Default::default()
    });
    if let Some(detached) = detached {
        // From here on the container does not depend on the daemon.
        drop(control);
        return detached.watch(pid);
    }
    loop {
        match init.until_command(&mut control) {
            Event::Exited(exit) => mirror(exit),
            Event::Command(_) => {}
            // The daemon is gone: the container goes with it.
            Event::Closed => {
                // SAFETY: kill with a pid and a signal number, no pointers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                mirror(init.reap());
            }
        }
    }
}

/// Creates the container; its init (the pid returned) waits for `start`.
/// Fds 1 and 2 (the output pipes) become the init's stdout and stderr.
fn create(args: &HelperArgs) -> Result<(Container, i32), String> {
    let stdin: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(|e| format!("opening /dev/null: {e}"))?
        .into();
    let dup = |fd: i32| -> Result<OwnedFd, String> {
        nix::fcntl::fcntl(
            // SAFETY: fds 1 and 2 are open (the daemon passed them) for this call.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3),
        )
        // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
        .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
        .map_err(|e| format!("duplicating fd {fd}: {e}"))
    };
    let container = ContainerBuilder::new(args.id.clone(), SyscallType::Linux)
        .with_root_path(&args.root)
        .map_err(|e| chain(&e))?
        .with_executor(CellExecutor)
        .with_stdin(stdin)
        .with_stdout(dup(1)?)
        .with_stderr(dup(2)?)
        .validate_id()
        .map_err(|e| chain(&e))?
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| chain(&e))?;
    match container.pid() {
        Some(pid) => Ok((container, pid.as_raw())),
        None => Err("libcontainer reported no init pid".into()),
    }
}

/// Moves the control socket off fd 0 (close-on-exec, so the container's
/// processes never hold it) and puts /dev/null on fd 0.
fn hide_stdio(control: OwnedFd) -> std::io::Result<OwnedFd> {
    let moved = nix::fcntl::fcntl(&control, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    let moved = unsafe { OwnedFd::from_raw_fd(moved) };
    // Leave fd 0 open (as /dev/null) rather than closed, so no later open reuses it.
    std::mem::forget(control);
    null_onto(&[0])?;
    Ok(moved)
}

pub(crate) fn null_onto(fds: &[i32]) -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in fds {
        // SAFETY: dup2 onto a standard fd that this process owns.
        if unsafe { libc::dup2(null.as_raw_fd(), *fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The control socket, read a line at a time.
struct Control {
    reader: BufReader<UnixStream>,
}

impl Control {
    fn new(stream: UnixStream) -> Self {
        Self {
            reader: BufReader::new(stream),
        }
    }

    fn reply(&mut self, reply: Reply) {
        if let Ok(mut line) = serde_json::to_string(&reply) {
            line.push('\n');
            // A daemon that is gone cannot be told; the closed socket says the rest.
            let _ = self.reader.get_mut().write_all(line.as_bytes());
        }
    }

    /// Tells the daemon why the container cannot run, kills its init if
    /// there is one, and gives the helper's exit code.
    fn fail(&mut self, why: String, init: Option<i32>) -> i32 {
        self.reply(Reply {
            error: Some(why),
            ..Default::default()
        });
        if let Some(pid) = init {
            kill_and_reap(pid);
        }
        1
    }

    /// The next line, or `None` at EOF.
    fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim().to_string()),
        }
    }
}

enum Event {
    Exited(Option<ExitKind>),
    Command(String),
    Closed,
}

/// The container's init process, watched through a pidfd.
struct Init {
    pid: i32,
    pidfd: OwnedFd,
}

impl Init {
    fn open(pid: i32) -> std::io::Result<Self> {
        Ok(Self {
            pid,
            pidfd: pidfd_open(pid)?,
        })
    }

    /// Waits for the init to exit (then reaps it) or for a line from the daemon.
    fn until_command(&self, control: &mut Control) -> Event {
        if !control.reader.buffer().is_empty() {
            return control.read_line().map_or(Event::Closed, Event::Command);
        }
        let mut fds = [
            libc::pollfd {
                fd: self.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: control.reader.get_ref().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Event::Exited(self.reap());
            }
            if fds[0].revents != 0 {
                return Event::Exited(self.reap());
            }
            if fds[1].revents != 0 {
                return control.read_line().map_or(Event::Closed, Event::Command);
            }
        }
    }

    /// Waits for the init to end and says how.
    fn reap(&self) -> Option<ExitKind> {
        wait_child(self.pid)
    }
}

fn kill_and_reap(pid: i32) {
    // SAFETY: kill with a pid and a signal number, no pointers.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = wait_child(pid);
}

/// Ends this process the way the container ended: the same exit code, or
/// death by the same signal (without a core dump).
pub(crate) fn mirror(exit: Option<ExitKind>) -> ! {
    match exit {
        Some(ExitKind::Code(code)) => std::process::exit(code),
        Some(ExitKind::Signal(signal)) => {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: setrlimit reads a valid rlimit; signal/raise take numbers only.
            unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::signal(signal, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, signal);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(signal);
            }
            // A signal whose default is not to end a process: report it as the shell would.
            std::process::exit(128 + signal)
        }
        // Not a child any more (it cannot happen for the init): an unknown end.
        None => std::process::exit(255),
    }
}

/// The default executor (execvp of args in the container), after undoing
/// what the helper's process state would otherwise leak into the workload:
/// ignored signals (the helper ignores SIGTERM, Rust ignores SIGPIPE) and a
/// blocked signal mask.
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
pub(crate) fn reset_signals() {
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
    fn replies_are_one_json_line_each() {
        let created = serde_json::to_string(&Reply {
            created: Some(42),
            ..Default::default()
        })
        .expect("json");
        assert_eq!(created, r#"{"created":42}"#);
        let back: Reply = serde_json::from_str(r#"{"error":"no such file"}"#).expect("parse");
        assert_eq!(back.error.as_deref(), Some("no such file"));
        assert_eq!(back.created, None);
    }
}
