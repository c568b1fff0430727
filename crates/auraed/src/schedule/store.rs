//! The schedule's tables in the state database: the registry (name ->
//! command, comment, enabled) and the runs (name -> the detached process
//! running it, so that a restarted daemon adopts it).
//!
//! Every mutation is durable before it returns (see `crate::state`). All
//! methods block on disk I/O: call them from `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::ScheduleError;
use crate::process::DetachedRecord;
use crate::state::{StateDb, Table};

/// One registered executable as stored (the layout of `schedule.units.v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub command: String,
    pub comment: String,
    pub enabled: bool,
}

const UNITS: Table<Record> = Table::new("schedule.units.v1");
const RUNS: Table<DetachedRecord> = Table::new("schedule.runs.v1");

#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<StateDb>,
}

impl Store {
    pub fn new(db: Arc<StateDb>) -> Self {
        Self { db }
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Every registered executable, sorted by name.
    pub fn load(&self) -> Result<BTreeMap<String, Record>, ScheduleError> {
        Ok(self.db.all(&UNITS)?)
    }

    /// Inserts or replaces the record of `name`, durably.
    pub fn put(&self, name: &str, r: &Record) -> Result<(), ScheduleError> {
        Ok(self.db.put(&UNITS, name, r)?)
    }

    /// Deletes the record of `name` (and its run), durably; false when there was none.
    pub fn delete(&self, name: &str) -> Result<bool, ScheduleError> {
        let existed = self.db.delete(&UNITS, name)?;
        self.db.delete(&RUNS, name)?;
        Ok(existed)
    }

    /// The detached processes recorded as running, by unit name.
    pub fn runs(&self) -> Result<BTreeMap<String, DetachedRecord>, ScheduleError> {
        Ok(self.db.all(&RUNS)?)
    }

    pub fn put_run(&self, name: &str, run: &DetachedRecord) -> Result<(), ScheduleError> {
        Ok(self.db.put(&RUNS, name, run)?)
    }

    pub fn delete_run(&self, name: &str) -> Result<(), ScheduleError> {
        self.db.delete(&RUNS, name)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(command: &str, enabled: bool) -> Record {
        Record {
            command: command.into(),
            comment: format!("about {command}"),
            enabled,
        }
    }

    #[test]
    fn round_trip_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::new(Arc::new(StateDb::open(dir.path()).expect("open")));
            assert!(s.load().expect("load").is_empty());
            s.put("web", &rec("sleep 1", true)).expect("put");
            s.put("db", &rec("sleep 2", false)).expect("put");
            s.put("tmp", &rec("sleep 3", true)).expect("put");
            s.put("web", &rec("sleep 1", false)).expect("replace");
            s.put_run(
                "tmp",
                &DetachedRecord {
                    pid: 5,
                    monitor_pid: 4,
                    monitor_start: 1,
                    cgroup: "aurae/schedule/tmp".into(),
                    log_dir: "/x".into(),
                },
            )
            .expect("run");
            assert!(s.delete("tmp").expect("delete"));
            assert!(!s.delete("tmp").expect("delete again"));
            assert!(
                s.runs().expect("runs").is_empty(),
                "a deleted unit has no run"
            );
        }
        let s = Store::new(Arc::new(StateDb::open(dir.path()).expect("reopen")));
        let all = s.load().expect("load");
        assert_eq!(all.keys().collect::<Vec<_>>(), ["db", "web"]);
        assert_eq!(all["web"], rec("sleep 1", false));
        assert_eq!(all["db"], rec("sleep 2", false));
    }
}
