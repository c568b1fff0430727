//! One inotify instance for the whole daemon, telling followers of a log
//! directory that something was written there. A watch exists only while
//! somebody follows that directory, so unwatched logs cost nothing, and
//! any number of followers share one watch per directory (inotify
//! instances are limited per user; watches much less so).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

struct Watched {
    wd: WatchDescriptor,
    tx: watch::Sender<u64>,
    followers: usize,
}

#[derive(Default)]
struct State {
    by_dir: HashMap<PathBuf, Watched>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

/// The daemon's directory watcher.
pub struct Watcher {
    fd: Arc<AsyncFd<InotifyFd>>,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watcher {
    /// Starts the watcher's reader task (needs a Tokio runtime).
    pub fn start() -> io::Result<Arc<Self>> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: the AsyncFd owns the Inotify, whose fd stays open and is
        // never replaced until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(InotifyFd(inotify)) }.map_err(io::Error::from)?;
        let fd = Arc::new(fd);
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(dispatch(Arc::downgrade(&fd), state.clone()));
        Ok(Arc::new(Self { fd, state }))
    }

    /// Follows `dir`: the receiver changes whenever a file in it is written,
    /// created or closed. The watch goes away with the last follower.
    pub fn follow(self: &Arc<Self>, dir: &Path) -> io::Result<DirWatch> {
        let mut st = lock(&self.state);
        if let Some(w) = st.by_dir.get_mut(dir) {
            w.followers += 1;
            return Ok(DirWatch {
                rx: w.tx.subscribe(),
                dir: dir.to_path_buf(),
                watcher: self.clone(),
            });
        }
        // IN_ATTRIB: the end marker is an xattr of the directory itself.
        let flags = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE_SELF;
        let wd = self.fd.get_ref().0.add_watch(dir, flags)?;
        let (tx, rx) = watch::channel(0);
        st.by_wd.insert(wd, dir.to_path_buf());
        st.by_dir.insert(
            dir.to_path_buf(),
            Watched {
                wd,
                tx,
                followers: 1,
            },
        );
        Ok(DirWatch {
            rx,
            dir: dir.to_path_buf(),
            watcher: self.clone(),
        })
    }

    /// Directories watched now (for tests and Status).
    pub fn watched(&self) -> usize {
        lock(&self.state).by_dir.len()
    }

    fn unfollow(&self, dir: &Path) {
        let mut st = lock(&self.state);
        let Some(w) = st.by_dir.get_mut(dir) else {
            return;
        };
        w.followers -= 1;
        if w.followers > 0 {
            return;
        }
        if let Some(w) = st.by_dir.remove(dir) {
            st.by_wd.remove(&w.wd);
            // Fails when the directory is gone (the kernel dropped the watch): fine.
            let _ = self.fd.get_ref().0.rm_watch(w.wd);
        }
    }
}

/// A follower's handle on a watched directory.
pub struct DirWatch {
    rx: watch::Receiver<u64>,
    dir: PathBuf,
    watcher: Arc<Watcher>,
}

impl DirWatch {
    /// Forgets changes seen so far; call before reading to the end.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Waits for a change after the last `mark_seen`.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The watcher is gone (daemon exiting): never wake up again.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.watcher.unfollow(&self.dir);
    }
}

async fn dispatch(fd: std::sync::Weak<AsyncFd<InotifyFd>>, state: Arc<Mutex<State>>) {
    loop {
        let Some(fd) = fd.upgrade() else { return };
        let mut ready = match fd.readable().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "log watcher stopped");
                return;
            }
        };
        match fd.get_ref().0.read_events() {
            Ok(events) => {
                let st = lock(&state);
                let overflow = events
                    .iter()
                    .any(|e| e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW));
                if overflow {
                    for w in st.by_dir.values() {
                        w.tx.send_modify(|n| *n += 1);
                    }
                    continue;
                }
                for ev in events {
                    if let Some(w) = st.by_wd.get(&ev.wd).and_then(|d| st.by_dir.get(d)) {
                        w.tx.send_modify(|n| *n += 1);
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
            Err(e) => {
                tracing::warn!(error = %e, "reading log watcher events");
                ready.clear_ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_followers_and_drops_the_watch_with_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Watcher::start().expect("watcher");
        let mut a = w.follow(dir.path()).expect("follow");
        let mut b = w.follow(dir.path()).expect("follow");
        assert_eq!(w.watched(), 1);
        a.mark_seen();
        b.mark_seen();
        std::fs::write(dir.path().join("x.log"), b"hi").expect("write");
        for f in [&mut a, &mut b] {
            tokio::time::timeout(Duration::from_secs(5), f.changed())
                .await
                .expect("woken");
        }
        drop(a);
        assert_eq!(w.watched(), 1);
        drop(b);
        assert_eq!(w.watched(), 0);
    }
}
