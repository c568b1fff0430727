//! Which complete logs to keep: the newest, within a total size.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Smallest size a log counts for (a directory and its files take blocks).
const MIN_COST: u64 = 4096;

pub(super) struct Retention {
    limit: u64,
    total: u64,
    /// Oldest first.
    kept: VecDeque<(PathBuf, u64)>,
}

impl Retention {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            total: 0,
            kept: VecDeque::new(),
        }
    }

    /// Adds a complete log; returns the logs to remove (oldest first).
    pub fn add(&mut self, dir: PathBuf, size: u64) -> Vec<PathBuf> {
        let cost = size.max(MIN_COST);
        self.total += cost;
        self.kept.push_back((dir, cost));
        let mut evicted = Vec::new();
        while self.total > self.limit {
            let Some((old, cost)) = self.kept.pop_front() else {
                break;
            };
            self.total -= cost;
            evicted.push(old);
        }
        evicted
    }
}

/// Bytes of the files directly in `dir`.
pub(super) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
