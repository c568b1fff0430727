//! `auraed monitor`: the small process that owns one detached workload,
//! in the style of conmon and containerd-shim. The daemon starts it; it
//! starts the workload in its cgroup, writes the workload's output to its
//! log and, when the workload exits, kills what is left in the cgroup,
//! drains the output and records the exit status in the log's end marker.
//! It keeps doing so while the daemon is down or restarting, so neither
//! the output nor the exit status of a scheduled executable is lost.
//!
//! Protocol with the daemon: the spec comes as JSON on the command line;
//! the monitor answers with one JSON line on its stdout, `{"pid":N}` once
//! the workload has exec'd or `{"error":"..."}`, then closes stdout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::exit::ExitKind;
use super::identity::Identity;
use super::launch::launch;
use super::supervise::{end_marker, DRAIN_TIMEOUT};
use super::vfork::open_placement;
use crate::cgroups::{self, CgroupPath};
use crate::logs::{LogLimits, LogWriter, Stream};

/// What the monitor runs and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorSpec {
    pub argv: Vec<OsString>,
    /// The workload's cgroup, relative to the cgroup mounts (created by the daemon).
    pub cgroup: String,
    pub log_dir: PathBuf,
    pub max_segment_bytes: u64,
    pub max_segments: usize,
    /// Who the workload runs as (resolved by the daemon); none: as the monitor.
    #[serde(default)]
    pub identity: Option<Identity>,
}

/// The monitor's one line to the daemon.
#[derive(Debug, Serialize, Deserialize)]
pub struct MonitorReply {
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Runs the monitor to the end of its workload; returns the process exit code.
pub fn run(spec_json: &str) -> i32 {
    // Its own session: a Ctrl-C at the daemon's terminal, or the daemon's
    // death, must not reach it. Only SIGKILL ends it early.
    let _ = nix::unistd::setsid();
    ignore_stop_signals();
    match start(spec_json) {
        Ok((spec, started)) => {
            reply(&MonitorReply {
                pid: Some(started.pid),
                error: None,
            });
            supervise(&spec.log_dir, started);
            0
        }
        Err(e) => {
            reply(&MonitorReply {
                pid: None,
                error: Some(e),
            });
            1
        }
    }
}

/// Only SIGKILL ends a helper process of the daemon (a monitor, a container
/// helper): a Ctrl-C at the daemon's terminal, a hang-up or a closed pipe
/// must not.
pub(crate) fn ignore_stop_signals() {
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    super::signals::changed();
}

/// A started workload as the monitor watches it: also what a detached
/// container's helper hands over once its container runs.
pub(crate) struct Started {
    pub pid: i32,
    pub writer: Arc<Mutex<LogWriter>>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub cgroup: CgroupPath,
    pub driver: Arc<dyn cgroups::CgroupDriver>,
}

fn start(spec_json: &str) -> Result<(MonitorSpec, Started), String> {
    let spec: MonitorSpec =
        serde_json::from_str(spec_json).map_err(|e| format!("bad monitor spec: {e}"))?;
    let driver = cgroups::detect_host().map_err(|e| e.to_string())?;
    let cgroup = CgroupPath::new(&spec.cgroup).map_err(|e| e.to_string())?;
    let limits = LogLimits {
        max_segment_bytes: spec.max_segment_bytes,
        max_segments: spec.max_segments,
    };
    let writer = LogWriter::open(&spec.log_dir, limits)
        .map_err(|e| format!("opening the log {}: {e}", spec.log_dir.display()))?;
    let program = spec
        .argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let procs = open_placement(&driver.self_placement_files(&cgroup))
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let procs: Vec<_> = procs.iter().map(|fd| fd.as_fd()).collect();
    let l = launch(&spec.argv, &procs, spec.identity.as_ref())
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    Ok((
        spec,
        Started {
            pid: l.pid,
            writer: Arc::new(Mutex::new(writer)),
            stdout: l.stdout,
            stderr: l.stderr,
            cgroup,
            driver,
        },
    ))
}

fn reply(r: &MonitorReply) {
    let mut out = std::io::stdout().lock();
    if let Ok(line) = serde_json::to_string(r) {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    drop(out);
    // The daemon reads one line; close our end so it sees EOF, and so a
    // daemon that died cannot make our writes fail.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Copies the workload's output into its log until it exits, kills what is
/// left in its cgroup, drains the output and writes the end marker.
pub(crate) fn supervise(log_dir: &std::path::Path, s: Started) {
    let (done_tx, done_rx) = mpsc::channel();
    for (fd, stream) in [(s.stdout, Stream::Stdout), (s.stderr, Stream::Stderr)] {
        let writer = s.writer.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            copy(fd, stream, &writer);
            let _ = done.send(());
        });
    }
    drop(done_tx);
    let exit = wait_child(s.pid);
    // Like KillMode=control-group: the main process is gone, so is the rest.
    if let Err(e) = s.driver.kill_all(&s.cgroup) {
        note(
            &s.writer,
            &format!("[aurae: could not kill what was left in the cgroup: {e}]"),
        );
    }
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx
            .recv_timeout(left.max(Duration::from_millis(1)))
            .is_err()
        {
            note(&s.writer, "[aurae: stopped reading output: the process exited but another process (outside its cgroup) still holds its output open]");
            break;
        }
    }
    let message = match exit {
        Some(e) => e.describe(),
        None => "the monitor lost track of the process: its exit status is unknown".into(),
    };
    let mut w = s.writer.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = w.finish(&end_marker(exit, message)) {
        eprintln!("auraed monitor: closing the log {}: {e}", log_dir.display());
    }
}

/// Blocks until child `pid` ends, reaps it and says how (`None` if it is
/// not a child of this process).
pub(crate) fn wait_child(pid: i32) -> Option<ExitKind> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Some(ExitKind::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(ExitKind::Signal(sig as i32)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

fn copy(fd: OwnedFd, stream: Stream, writer: &Mutex<LogWriter>) {
    let mut pipe = std::fs::File::from(fd);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = w.write(stream, &buf[..n]) {
                    eprintln!("auraed monitor: writing the log: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

fn note(writer: &Mutex<LogWriter>, text: &str) {
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    let _ = w.note(Stream::Stderr, text);
}
