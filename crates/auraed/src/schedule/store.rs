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
use crate::cgroups::Limits;
use crate::process::DetachedRecord;
use crate::state::{StateDb, Table};

/// One registered executable as stored (the layout of `schedule.units.v1`).
/// Fields added later have serde defaults, so older records stay readable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub command: String,
    pub comment: String,
    pub enabled: bool,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub group: String,
}

impl Record {
    /// Its limits, user and group as a person reads them (for messages).
    pub fn settings(&self) -> String {
        let show = |v: Option<u64>| v.map_or("default".to_string(), |n| n.to_string());
        let or_default = |s: &str| {
            if s.is_empty() {
                "default".to_string()
            } else {
                format!("{s:?}")
            }
        };
        format!(
            "user {} group {} pids {} memory_bytes {} cpu_millis {}",
            or_default(&self.user),
            or_default(&self.group),
            show(self.limits.pids),
            show(self.limits.memory_bytes),
            show(self.limits.cpu_millis),
        )
    }
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
            ..Default::default()
        }
    }

    #[test]
    fn records_of_older_daemons_stay_readable_and_new_fields_persist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(StateDb::open(dir.path()).expect("open"));
        // What a daemon without limits, user and group wrote.
        #[derive(Serialize)]
        struct Old {
            command: String,
            comment: String,
            enabled: bool,
        }
        let old: Table<Old> = Table::new("schedule.units.v1");
        let written = Old {
            command: "sleep 1".into(),
            comment: String::new(),
            enabled: true,
        };
        db.put(&old, "legacy", &written).expect("put old");
        let s = Store::new(db);
        let new = Record {
            limits: Limits::from_wire(10, 1 << 20, 100),
            user: "nobody".into(),
            group: "nogroup".into(),
            ..rec("sleep 2", true)
        };
        s.put("new", &new).expect("put new");
        let all = s.load().expect("load");
        assert_eq!(
            all["legacy"],
            Record {
                command: "sleep 1".into(),
                enabled: true,
                ..Default::default()
            }
        );
        assert_eq!(all["new"], new);
        assert!(
            new.settings().contains("user \"nobody\""),
            "{}",
            new.settings()
        );
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
