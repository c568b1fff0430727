//! Giving memory back after subscribers leave. The C allocator keeps freed
//! memory for reuse; after a burst of streams ends (thousands of idle
//! subscribers can come and go) the daemon asks it to return what it can,
//! once per burst, off the async threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static PENDING: AtomicBool = AtomicBool::new(false);

/// Waits for the rest of a burst of departures before trimming.
const SETTLE: Duration = Duration::from_millis(500);

/// Called when a subscriber's stream is dropped.
pub fn subscriber_left() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        PENDING.store(false, Ordering::Release);
        return;
    };
    rt.spawn(async {
        tokio::time::sleep(SETTLE).await;
        PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only walks the allocator's own arenas.
            unsafe { libc::malloc_trim(0) };
        })
        .await;
    });
}

/// Calls [`subscriber_left`] when dropped: put one in each subscriber's stream.
pub struct LeaveGuard;

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        subscriber_left();
    }
}
