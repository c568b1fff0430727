//! The on-disk log store: every workload's stdout and stderr, and the
//! daemon's own log, in the Kubernetes CRI log format.
//!
//! ```text
//! <state_dir>/logs/
//!   workloads/<kind>.<name>.<id>/   one directory per workload run
//!     0000000001.log ...            CRI records, rotated by size (writer.rs)
//!     end                           written once the log is complete (end.rs)
//!   pids.index                      `<pid> <workloads/ dir>` lines: the newest
//!                                   workload that had this pid (pid_index.rs)
//!   daemon/                         the daemon's log, rotated the same way
//! ```
//!
//! Writers never wait for readers; readers follow the files at their own
//! pace (reader.rs, follow.rs), woken by one shared inotify (watch.rs).
//! Complete logs are kept within a total size and removed oldest first.

pub mod cri;
pub mod end;
pub mod follow;
mod pid_index;
pub mod reader;
mod retention;
mod spare;
mod text;
pub mod watch;
pub mod writer;

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

pub use cri::Stream;
pub use end::{describe_exit, EndMarker};
pub use follow::{follow, Until};
pub use reader::{Event, Line, LogCursor};
pub use text::{read_output, OutputText};
pub use watch::Watcher;
pub use writer::{LogLimits, LogWriter};

use pid_index::PidIndex;
use retention::Retention;
use spare::SpareDirs;

/// Default total size of complete workload logs kept.
pub const DEFAULT_RETAIN_BYTES: u64 = 512 << 20;

/// What kind of workload a log belongs to; part of its directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A RunExecutable call.
    Exec,
    /// A container of a cell.
    Cell,
    /// A container of a detached cell (its helper writes the log, which
    /// outlives the daemon).
    DetachedCell,
    /// A scheduled executable (its monitor writes the log).
    Schedule,
    /// A virtual machine's console (its monitor writes the log).
    Vm,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Cell => "cell",
            Kind::DetachedCell => "detached-cell",
            Kind::Schedule => "schedule",
            Kind::Vm => "vm",
        }
    }

    /// Written by the daemon itself, so it cannot outlive the daemon.
    fn written_by_daemon(self) -> bool {
        matches!(self, Kind::Exec | Kind::Cell)
    }

    fn of_dir(name: &str) -> Option<Self> {
        match name.split('.').next()? {
            "exec" => Some(Kind::Exec),
            "cell" => Some(Kind::Cell),
            "detached-cell" => Some(Kind::DetachedCell),
            "schedule" => Some(Kind::Schedule),
            "vm" => Some(Kind::Vm),
            _ => None,
        }
    }
}

/// The log store of one daemon.
pub struct LogStore {
    root: PathBuf,
    limits: LogLimits,
    /// Started with the first follower (it needs the Tokio runtime).
    watcher: std::sync::OnceLock<Arc<Watcher>>,
    last_id: AtomicI64,
    retention: Mutex<Retention>,
    pids: Mutex<PidIndex>,
    spares: SpareDirs,
}

impl LogStore {
    /// Opens (or creates) the store under `root`. Logs left incomplete by a
    /// daemon that died while writing them are marked complete, with an
    /// unknown exit.
    pub fn open(root: &Path, limits: LogLimits, retain_bytes: u64) -> io::Result<Arc<Self>> {
        for dir in [root.to_path_buf(), root.join("workloads")] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
        }
        let workloads = root.join("workloads");
        let pids = PidIndex::open(root, |dir| workloads.join(dir).is_dir())?;
        let store = Self {
            root: root.to_path_buf(),
            limits,
            watcher: std::sync::OnceLock::new(),
            last_id: AtomicI64::new(0),
            retention: Mutex::new(Retention::new(retain_bytes)),
            pids: Mutex::new(pids),
            spares: SpareDirs::start(&workloads),
        };
        store.recover()?;
        Ok(Arc::new(store))
    }

    pub fn limits(&self) -> LogLimits {
        self.limits
    }

    /// The directory watcher of followers (call from within the Tokio runtime).
    pub fn watcher(&self) -> std::io::Result<&Arc<Watcher>> {
        if let Some(w) = self.watcher.get() {
            return Ok(w);
        }
        let w = Watcher::start()?;
        Ok(self.watcher.get_or_init(|| w))
    }

    /// Where the daemon's own log is written.
    pub fn daemon_dir(&self) -> PathBuf {
        self.root.join("daemon")
    }

    /// A new, empty log directory for one run of a workload.
    pub fn create(&self, kind: Kind, name: &str) -> io::Result<PathBuf> {
        let id = self.next_id();
        let name = if name.is_empty() { "-" } else { name };
        let dir = self
            .root
            .join("workloads")
            .join(format!("{}.{name}.{id:x}", kind.as_str()));
        match self.spares.take() {
            Some(spare) if std::fs::rename(&spare, &dir).is_ok() => {}
            _ => std::fs::create_dir(&dir)?,
        }
        Ok(dir)
    }

    /// Records that `pid` is the process writing to `dir`.
    pub fn link_pid(&self, pid: i32, dir: &Path) -> io::Result<()> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::other(format!("not a log directory: {}", dir.display())))?;
        self.lock_pids().link(pid, name)
    }

    /// The log directory of the newest workload that had `pid`, if still kept.
    pub fn by_pid(&self, pid: i32) -> Option<PathBuf> {
        if pid <= 0 {
            return None;
        }
        let dir = self.root.join("workloads").join(self.lock_pids().get(pid)?);
        dir.is_dir().then_some(dir)
    }

    /// The log in `dir` is complete: count it (its `size`, when the caller
    /// knows it, saves listing the directory), and remove the oldest
    /// complete logs beyond the retention bound.
    pub fn complete(&self, dir: &Path, size: Option<u64>) {
        let old = self.count_complete(dir, size);
        self.remove_old(old);
    }

    /// The counting half of [`Self::complete`] (no I/O when `size` is
    /// given): returns the logs now beyond the bound, for [`Self::remove_old`].
    pub fn count_complete(&self, dir: &Path, size: Option<u64>) -> Vec<PathBuf> {
        let size = size.unwrap_or_else(|| retention::dir_size(dir));
        self.lock_retention().add(dir.to_path_buf(), size)
    }

    /// Removes logs evicted by [`Self::count_complete`] (blocking).
    pub fn remove_old(&self, evicted: Vec<PathBuf>) {
        for old in evicted {
            if let Err(e) = std::fs::remove_dir_all(&old) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %old.display(), error = %e, "removing an old log");
                }
            }
            if let Some(name) = old.file_name().and_then(|n| n.to_str()) {
                self.lock_pids().forget(name);
            }
        }
    }

    /// Workload logs of `kind` that are not complete (their writer is, or was, running).
    pub fn incomplete(&self, kind: Kind) -> Vec<PathBuf> {
        self.workload_dirs()
            .into_iter()
            .filter(|(k, d)| *k == kind && EndMarker::read(d).is_none())
            .map(|(_, d)| d)
            .collect()
    }

    fn lock_retention(&self) -> std::sync::MutexGuard<'_, Retention> {
        self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pids(&self) -> std::sync::MutexGuard<'_, PidIndex> {
        self.pids.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self) -> i64 {
        // Strictly increasing and time-based, so ids stay unique across restarts.
        let now = cri::now_nanos();
        let mut last = self.last_id.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self
                .last_id
                .compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    fn workload_dirs(&self) -> Vec<(Kind, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.root.join("workloads")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let kind = Kind::of_dir(e.file_name().to_str()?)?;
                Some((kind, e.path()))
            })
            .collect()
    }

    /// At open: account complete logs (oldest first) and close the logs
    /// that a dead daemon was writing.
    fn recover(&self) -> io::Result<()> {
        let mut complete = Vec::new();
        for (kind, dir) in self.workload_dirs() {
            let end = match EndMarker::read(&dir) {
                Some(end) => end,
                None if kind.written_by_daemon() => {
                    let end = EndMarker {
                        ended_at: cri::now_nanos(),
                        code: None,
                        signal: None,
                        message: "the daemon that ran it stopped before it ended: its exit status is unknown".into(),
                    };
                    end.write(&dir)?;
                    end
                }
                None => continue,
            };
            complete.push((end.ended_at, dir));
        }
        complete.sort();
        for (_, dir) in complete {
            self.complete(&dir, None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(msg: &str) -> EndMarker {
        EndMarker {
            ended_at: cri::now_nanos(),
            code: Some(0),
            signal: None,
            message: msg.into(),
        }
    }

    #[tokio::test]
    async fn pids_link_to_the_newest_run_and_survive_reopen() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(root.path(), LogLimits::default(), 1 << 30).expect("open");
        let a = store.create(Kind::Exec, "").expect("create");
        let b = store.create(Kind::Schedule, "web").expect("create");
        assert_ne!(a, b);
        store.link_pid(42, &a).expect("link");
        assert_eq!(store.by_pid(42), Some(a.clone()));
        store.link_pid(42, &b).expect("relink");
        assert_eq!(store.by_pid(42), Some(b.clone()));
        assert_eq!(store.by_pid(43), None);
        drop(store);
        let store = LogStore::open(root.path(), LogLimits::default(), 1 << 30).expect("reopen");
        assert_eq!(store.by_pid(42), Some(b.clone()));
        // The dead daemon's RunExecutable log is closed; the scheduled one is left to its monitor.
        assert!(EndMarker::read(&a)
            .expect("closed")
            .message
            .contains("unknown"));
        assert_eq!(store.incomplete(Kind::Schedule), [b]);
    }

    #[tokio::test]
    async fn oldest_complete_logs_go_first() {
        let root = tempfile::tempdir().expect("tempdir");
        let store = LogStore::open(root.path(), LogLimits::default(), 3 * 4096).expect("open");
        let dirs: Vec<PathBuf> = (0..5)
            .map(|_| {
                let d = store.create(Kind::Exec, "x").expect("create");
                end("done").write(&d).expect("end");
                store.complete(&d, None);
                d
            })
            .collect();
        let kept: Vec<bool> = dirs.iter().map(|d| d.exists()).collect();
        assert_eq!(kept, [false, false, true, true, true]);
    }
}
