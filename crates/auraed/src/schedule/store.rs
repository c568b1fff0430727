//! The registry on disk: one redb table, name -> (command, comment, enabled).
//!
//! Every mutation is its own write transaction committed with
//! `Durability::Immediate`: when a method returns `Ok`, the change is on
//! stable storage and survives `kill -9` of the daemon and a power cut.
//! redb is copy-on-write with checksummed commits, so a crash mid-commit
//! leaves the previous committed state.
//!
//! All methods block on disk I/O: call them from `spawn_blocking`.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::error::ScheduleError;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "schedule.redb";

/// How long `open` waits for the file lock. A child forked by a daemon that
/// was just killed holds the lock until it execs, so a daemon restarted at
/// once may find the file locked for a moment.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// name -> (command, comment, enabled). A new layout gets a new table name.
const EXECUTABLES: TableDefinition<&str, (&str, &str, bool)> =
    TableDefinition::new("executables_v1");

/// One registered executable as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub command: String,
    pub comment: String,
    pub enabled: bool,
}

#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `<state_dir>/schedule.redb`, repairing it after a crash.
    pub fn open(state_dir: &Path) -> Result<Self, ScheduleError> {
        Self::open_waiting(state_dir, LOCK_WAIT)
    }

    fn open_waiting(state_dir: &Path, lock_wait: Duration) -> Result<Self, ScheduleError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| ScheduleError::StateDir {
                path: state_dir.to_path_buf(),
                source,
            })?;
        let path = state_dir.join(DB_FILE);
        let deadline = Instant::now() + lock_wait;
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(ScheduleError::Store {
                        path,
                        what: "opening (is another auraed using this --state-dir?)",
                        source: Box::new(e.into()),
                    })
                }
            }
        };
        let store = Self { db, path };
        // Create the table up front so that reads of a fresh database find it.
        store.write("creating the table", |_| Ok(()))?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record, sorted by name.
    pub fn load(&self) -> Result<BTreeMap<String, Record>, ScheduleError> {
        let err = |e: redb::Error| ScheduleError::Store {
            path: self.path.clone(),
            what: "reading",
            source: Box::new(e),
        };
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = txn.open_table(EXECUTABLES).map_err(|e| err(e.into()))?;
        let mut out = BTreeMap::new();
        for row in table.iter().map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            let (command, comment, enabled) = v.value();
            out.insert(
                k.value().to_string(),
                Record {
                    command: command.to_string(),
                    comment: comment.to_string(),
                    enabled,
                },
            );
        }
        Ok(out)
    }

    /// Inserts or replaces the record of `name`, durably.
    pub fn put(&self, name: &str, r: &Record) -> Result<(), ScheduleError> {
        self.write("writing", |t| {
            t.insert(name, (r.command.as_str(), r.comment.as_str(), r.enabled))?;
            Ok(())
        })
    }

    /// Deletes the record of `name`, durably; false when there was none.
    pub fn delete(&self, name: &str) -> Result<bool, ScheduleError> {
        let mut existed = false;
        self.write("deleting", |t| {
            existed = t.remove(name)?.is_some();
            Ok(())
        })?;
        Ok(existed)
    }

    /// Runs `f` on the table in one write transaction and commits it durably.
    fn write(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut redb::Table<'_, &str, (&str, &str, bool)>) -> Result<(), redb::Error>,
    ) -> Result<(), ScheduleError> {
        let run = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut table = txn.open_table(EXECUTABLES)?;
                f(&mut table)?;
            }
            txn.commit()?;
            Ok(())
        };
        run().map_err(|source| ScheduleError::Store {
            path: self.path.clone(),
            what,
            source: Box::new(source),
        })
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
            let s = Store::open(dir.path()).expect("open");
            assert!(s.load().expect("load").is_empty());
            s.put("web", &rec("sleep 1", true)).expect("put");
            s.put("db", &rec("sleep 2", false)).expect("put");
            s.put("tmp", &rec("sleep 3", true)).expect("put");
            s.put("web", &rec("sleep 1", false)).expect("replace");
            assert!(s.delete("tmp").expect("delete"));
            assert!(!s.delete("tmp").expect("delete again"));
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.path(), dir.path().join(DB_FILE));
        let all = s.load().expect("load");
        assert_eq!(all.keys().collect::<Vec<_>>(), ["db", "web"]);
        assert_eq!(all["web"], rec("sleep 1", false));
        assert_eq!(all["db"], rec("sleep 2", false));
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("open");
        let err =
            Store::open_waiting(dir.path(), Duration::from_millis(100)).expect_err("second open");
        assert!(err.to_string().contains("another auraed"), "{err}");
    }

    #[test]
    fn creates_the_state_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        Store::open(&nested).expect("open");
        assert!(nested.join(DB_FILE).is_file());
    }
}
