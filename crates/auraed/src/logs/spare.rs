//! Empty directories made ahead of time, so that starting a workload
//! renames one (a directory entry) instead of making one (an inode).
//!
//! On ext4 without a journal (the root filesystem here) an inode
//! allocation scans past every recently deleted inode of its group: the
//! mkdir of a log directory was the largest cost left on a RunExecutable's
//! path once the pid index stopped making symlinks. A helper thread keeps
//! a few directories ready; when it falls behind, `take` returns None and
//! the caller makes one itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};

/// Directories kept ready.
const READY: usize = 32;
/// The helper makes more when no more than this many are left.
const LOW: usize = READY / 2;
/// Their names start with this (not a workload kind, so listings skip them).
pub(super) const PREFIX: &str = ".spare.";

struct Shared {
    ready: Mutex<Vec<PathBuf>>,
    wanted: Condvar,
}

pub(super) struct SpareDirs {
    shared: Arc<Shared>,
}

impl SpareDirs {
    /// Spares in `parent`: those an earlier daemon left, then a helper thread
    /// that makes more.
    pub fn start(parent: &Path) -> Self {
        let left: Vec<PathBuf> = std::fs::read_dir(parent)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            ready: Mutex::new(left),
            wanted: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        let parent = parent.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("log-spare-dirs".into())
            .spawn(move || refill(weak, &parent));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no helper for log directories: each is made when needed");
        }
        Self { shared }
    }

    /// A ready, empty directory, if there is one.
    pub fn take(&self) -> Option<PathBuf> {
        let (dir, left) = {
            let mut ready = lock(&self.shared.ready);
            (ready.pop(), ready.len())
        };
        // The helper is woken once per half of the batch, not per run: a
        // wake-up is a futex call and two context switches.
        if left <= LOW {
            self.shared.wanted.notify_one();
        }
        dir
    }
}

impl Drop for SpareDirs {
    fn drop(&mut self) {
        // The helper holds only a Weak: wake it so it sees the store is gone.
        self.shared.wanted.notify_all();
    }
}

fn lock(m: &Mutex<Vec<PathBuf>>) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn refill(shared: Weak<Shared>, parent: &Path) {
    // Background work: a start that finds no spare makes its directory
    // itself, so this thread must never take a CPU from one. SCHED_IDLE
    // rather than nice 19: the scheduler counts a CPU that runs only
    // SCHED_IDLE work as idle when it places a woken task (and preempts
    // this thread at once), so a daemon thread or a child it just started
    // does not queue behind another task while this thread holds a CPU.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "making the log directory helper SCHED_IDLE");
    }
    let mut n: u64 = 0;
    loop {
        let Some(s) = shared.upgrade() else { return };
        {
            let ready = lock(&s.ready);
            if ready.len() >= READY {
                // Woken by `take`, or by the store going away.
                let timeout = std::time::Duration::from_secs(1);
                drop(s.wanted.wait_timeout(ready, timeout));
                continue;
            }
        }
        n += 1;
        let dir = parent.join(format!("{PREFIX}{}.{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => lock(&s.ready).push(dir),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "making a spare log directory");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_made_ahead_and_reused_after_a_restart() {
        let root = tempfile::tempdir().expect("tempdir");
        let spares = SpareDirs::start(root.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let dir = loop {
            if let Some(d) = spares.take() {
                break d;
            }
            assert!(std::time::Instant::now() < deadline, "no spare made");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(dir.is_dir() && dir.starts_with(root.path()));
        drop(spares);
        let again = SpareDirs::start(root.path());
        assert!(again.take().is_some(), "left spares are taken first");
    }
}
