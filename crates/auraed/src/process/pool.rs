//! Transient cgroups kept for the next run instead of removed. Under cgroup
//! v1 a cgroup is a directory in every hierarchy (five here), and making
//! one (mkdir in each, its default `pids.max`) and removing it (rmdir in
//! each) costs about as much as starting `/bin/true`. So the cgroup of a
//! finished run that left nothing behind goes back to the pool as it is
//! (empty, with the default limits it was made with), and the next run
//! with the default limits takes it: no mkdir or rmdir on the path of a
//! RunExecutable. A run with limits of its own gets a new cgroup, removed
//! after it. Kept cgroups unused for [`KEEP_IDLE`] are removed, so an idle
//! daemon leaves no empty cgroup behind, as systemd removes a finished scope.
//!
//! Names stay unique per cgroup, not per run: a kept `run-17.scope` is
//! reused as it is (no rename, which cgroup v2 does not allow). Nothing
//! outside the executables subsystem names these cgroups; the daemon removes
//! the pool with the rest of its cgroups at exit, and a new daemon removes
//! whatever an earlier one left (`Executables::clean_leftovers`).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::cgroups::{CgroupDriver, CgroupError, CgroupPath, CgroupProbe};

/// Cgroups kept at most: more than the calls a busy client has in flight.
pub const MAX_KEPT: usize = 64;

/// How long a kept cgroup waits for a run before it is removed.
pub const KEEP_IDLE: Duration = Duration::from_secs(1);

pub struct CgroupPool {
    cgroups: Arc<dyn CgroupDriver>,
    parent: CgroupPath,
    next_id: AtomicU64,
    /// Kept cgroups, newest last.
    kept: Mutex<Vec<Kept>>,
}

struct Kept {
    path: CgroupPath,
    /// When it was given back.
    at: Instant,
    files: CgroupFiles,
}

/// A cgroup's files the daemon keeps open while the cgroup is in the pool,
/// so that a run in it costs no path walk to place its child or to check
/// its end.
#[derive(Debug, Default)]
pub struct CgroupFiles {
    /// Its `cgroup.procs` (v1: `tasks`) files, for the child to write
    /// itself into (see `vfork::open_placement`).
    pub placement: Vec<OwnedFd>,
    /// For the checks at the end of a run; none when it could not be opened.
    pub probe: Option<CgroupProbe>,
}

/// A cgroup for one run.
#[derive(Debug)]
pub struct PoolCgroup {
    pub path: CgroupPath,
    /// True when it exists already, empty, with the default limits.
    pub made: bool,
    /// Its open files, when it was kept with them; else none.
    pub files: CgroupFiles,
}

impl CgroupPool {
    pub fn new(cgroups: Arc<dyn CgroupDriver>, parent: CgroupPath) -> Self {
        Self {
            cgroups,
            parent,
            next_id: AtomicU64::new(1),
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The parent of every cgroup of the pool.
    pub fn parent(&self) -> &CgroupPath {
        &self.parent
    }

    /// A kept cgroup when there is one, else a new name.
    pub fn take(&self) -> Result<PoolCgroup, CgroupError> {
        if let Some(kept) = self.lock().pop() {
            return Ok(PoolCgroup {
                path: kept.path,
                made: true,
                files: kept.files,
            });
        }
        Ok(PoolCgroup {
            path: self.fresh()?,
            made: false,
            files: CgroupFiles::default(),
        })
    }

    /// A name no cgroup of the pool has had.
    pub fn fresh(&self) -> Result<CgroupPath, CgroupError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.parent.workload(&format!("run-{id}"))
    }

    /// Takes back the cgroup of a finished run whose processes are all gone
    /// and that had the default limits; removes it when the pool is full.
    /// Blocking when it removes.
    pub fn give_back(&self, path: CgroupPath) {
        if let Err(path) = self.keep(path, CgroupFiles::default()) {
            self.remove(&path);
        }
    }

    /// Keeps `path`, with its open `files`, for the next run without
    /// blocking; a full pool hands it back, to be removed.
    pub fn keep(&self, path: CgroupPath, files: CgroupFiles) -> Result<(), CgroupPath> {
        let mut kept = self.lock();
        if kept.len() < MAX_KEPT {
            kept.push(Kept {
                path,
                at: Instant::now(),
                files,
            });
            return Ok(());
        }
        Err(path)
    }

    /// Removes a cgroup the pool will not take back (blocking).
    pub fn remove(&self, path: &CgroupPath) {
        if let Err(e) = self.cgroups.remove(path) {
            tracing::warn!(cgroup = path.as_str(), error = %e, "removing cgroup");
        }
    }

    /// Removes the cgroups kept longer than `idle` (blocking).
    pub fn trim(&self, idle: Duration) {
        let stale: Vec<CgroupPath> = {
            let mut kept = self.lock();
            // Taken from the end, so the oldest are at the front.
            let fresh = kept.partition_point(|k| k.at.elapsed() >= idle);
            kept.drain(..fresh).map(|k| k.path).collect()
        };
        for path in stale {
            self.remove(&path);
        }
    }

    /// Trims `pool` every [`KEEP_IDLE`] on a thread of its own, until the pool is dropped.
    pub fn trim_in_background(pool: &Arc<Self>) -> std::io::Result<()> {
        let pool: Weak<Self> = Arc::downgrade(pool);
        std::thread::Builder::new()
            .name("cgroup-pool".into())
            .spawn(move || loop {
                std::thread::sleep(KEEP_IDLE);
                match pool.upgrade() {
                    Some(pool) => pool.trim(KEEP_IDLE),
                    None => return,
                }
            })
            .map(drop)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::signal::RecordingSignaller;
    use crate::cgroups::v2::V2Driver;

    fn pool(root: &std::path::Path) -> CgroupPool {
        let driver = Arc::new(V2Driver::new(root, Arc::new(RecordingSignaller::new())));
        CgroupPool::new(driver, CgroupPath::new("aurae/exec").expect("path"))
    }

    #[test]
    fn a_given_back_cgroup_is_taken_again_as_made() {
        let root = tempfile::tempdir().expect("tempdir");
        let p = pool(root.path());
        let first = p.take().expect("take");
        assert_eq!(first.path.as_str(), "aurae/exec/run-1.scope");
        assert!(!first.made);
        let second = p.take().expect("take");
        assert_eq!(second.path.as_str(), "aurae/exec/run-2.scope");
        p.give_back(first.path.clone());
        let again = p.take().expect("take");
        assert_eq!((again.path, again.made), (first.path, true));
        assert_eq!(p.fresh().expect("fresh").as_str(), "aurae/exec/run-3.scope");
    }

    #[test]
    fn a_full_pool_removes_what_it_cannot_keep() {
        let root = tempfile::tempdir().expect("tempdir");
        let p = pool(root.path());
        let taken: Vec<_> = (0..=MAX_KEPT).map(|_| p.take().expect("take")).collect();
        let last = taken.last().expect("one").path.clone();
        std::fs::create_dir_all(root.path().join(last.as_str())).expect("mkdir");
        for t in taken {
            p.give_back(t.path);
        }
        assert!(!root.path().join(last.as_str()).exists(), "removed");
        assert_eq!(p.lock().len(), MAX_KEPT);
    }

    #[test]
    fn idle_cgroups_are_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let p = pool(root.path());
        let (old, new) = (p.take().expect("take"), p.take().expect("take"));
        for c in [&old, &new] {
            std::fs::create_dir_all(root.path().join(c.path.as_str())).expect("mkdir");
        }
        p.give_back(old.path.clone());
        std::thread::sleep(Duration::from_millis(50));
        p.give_back(new.path.clone());
        p.trim(Duration::from_millis(40));
        assert!(
            !root.path().join(old.path.as_str()).exists(),
            "idle: removed"
        );
        assert!(root.path().join(new.path.as_str()).exists(), "recent: kept");
        assert_eq!(p.take().expect("take").path, new.path);
    }
}
