//! Cgroups left under a workload kind's parent by a daemon that died, with
//! no record to adopt them by: stopped and removed, so nothing runs twice.

use super::Processes;
use crate::cgroups::CgroupPath;

impl Processes {
    /// Kills and removes every child cgroup of `parent` not named in `keep`
    /// (full cgroup paths); returns how many. `kind` names them in the log.
    pub async fn clean_leftovers(
        &self,
        parent: &CgroupPath,
        keep: Vec<String>,
        kind: &'static str,
    ) -> usize {
        let cgroups = self.cgroups.clone();
        let parent = parent.clone();
        let cleaned = tokio::task::spawn_blocking(move || {
            let children = match cgroups.children(&parent) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(cgroup = parent.as_str(), kind, error = %e, "listing leftover cgroups");
                    return 0;
                }
            };
            let mut n = 0;
            for child in children {
                let Ok(path) = parent.join(&child) else { continue };
                if keep.iter().any(|c| c == path.as_str()) {
                    continue;
                }
                let pids = cgroups.pids(&path).unwrap_or_default();
                tracing::info!(
                    cgroup = path.as_str(),
                    kind,
                    pids = ?pids,
                    "stopping a workload left running by a previous daemon"
                );
                if let Err(e) = cgroups.kill_all(&path).and_then(|_| cgroups.remove(&path)) {
                    tracing::warn!(cgroup = path.as_str(), kind, error = %e, "could not remove a leftover cgroup");
                }
                n += 1;
            }
            n
        })
        .await
        .unwrap_or(0);
        if cleaned > 0 {
            tracing::info!(
                cgroups = cleaned,
                kind,
                "removed leftovers of a previous daemon"
            );
        }
        cleaned
    }
}
