//! The daemon's one embedded database (redb): typed, versioned tables of
//! records keyed by name, with a migration step at open.
//!
//! Each table is declared once as a [`Table`] with its record type and a
//! versioned name (`schedule.units.v1`); a new record layout gets a new
//! name and a migration (migrate.rs) that fills it from the old one.
//! Records are stored as JSON, so a field added with a serde default does
//! not need a migration.
//!
//! Every write is its own transaction committed with
//! `Durability::Immediate`: once a call returns `Ok`, the change survives
//! `kill -9` and a power cut. All methods block: call them from
//! `spawn_blocking` in async code.

mod migrate;

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "aurae.redb";

/// Version of the layout this daemon writes; older databases are migrated.
pub const SCHEMA_VERSION: u32 = 1;

/// How long `open` waits for the file lock: a child forked by a daemon
/// that was just killed can hold it until it execs.
const LOCK_WAIT: Duration = Duration::from_secs(3);

const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

#[derive(Debug, Error)]
pub enum StateError {
    #[error("state database {}: {what}", path.display())]
    Db {
        path: PathBuf,
        what: String,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("state database {}: opening: is another auraed using this --state-dir?", path.display())]
    Locked { path: PathBuf },
    #[error("state database {}: record {key:?} of {table} is not readable", path.display())]
    Decode {
        path: PathBuf,
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("state database {}: written by a newer auraed (schema {found}, this one knows {SCHEMA_VERSION})", path.display())]
    TooNew { path: PathBuf, found: u32 },
    #[error("creating the state directory {}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("migrating {}", path.display())]
    Migrate {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
}

/// A table of `V` records keyed by name.
pub struct Table<V> {
    name: &'static str,
    _record: PhantomData<fn() -> V>,
}

impl<V> Table<V> {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _record: PhantomData,
        }
    }

    fn def(&self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[derive(Debug)]
pub struct StateDb {
    db: Database,
    path: PathBuf,
}

impl StateDb {
    /// Opens (or creates) `<state_dir>/aurae.redb` and migrates what an
    /// older daemon left in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StateError> {
        Self::open_waiting(state_dir, LOCK_WAIT)
    }

    pub(crate) fn open_waiting(state_dir: &Path, lock_wait: Duration) -> Result<Self, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| StateError::Dir {
                path: state_dir.to_path_buf(),
                source,
            })?;
        let path = state_dir.join(DB_FILE);
        let db = open_db(&path, lock_wait)?;
        let state = Self { db, path };
        migrate::run(&state, state_dir)?;
        Ok(state)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the database (0 for a new one).
    pub fn version(&self) -> Result<u32, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err("reading", e))?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(self.err("reading", e)),
        };
        let v = meta
            .get("schema_version")
            .map_err(|e| self.err("reading", e))?;
        Ok(v.map(|v| v.value()).unwrap_or(0))
    }

    /// Every record of `table`, by key.
    pub fn all<V: DeserializeOwned>(
        &self,
        table: &Table<V>,
    ) -> Result<BTreeMap<String, V>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.err("reading", e))?;
        let t = match txn.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.err("reading", e)),
        };
        let mut out = BTreeMap::new();
        for row in t.iter().map_err(|e| self.err("reading", e))? {
            let (k, v) = row.map_err(|e| self.err("reading", e))?;
            let key = k.value().to_string();
            let record =
                serde_json::from_slice(v.value()).map_err(|source| StateError::Decode {
                    path: self.path.clone(),
                    table: table.name,
                    key: key.clone(),
                    source,
                })?;
            out.insert(key, record);
        }
        Ok(out)
    }

    /// Inserts or replaces `key`, durably.
    pub fn put<V: Serialize>(
        &self,
        table: &Table<V>,
        key: &str,
        record: &V,
    ) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StateError::Decode {
            path: self.path.clone(),
            table: table.name,
            key: key.to_string(),
            source: e,
        })?;
        self.write(|txn| {
            txn.open_table(table.def())?.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Deletes `key`, durably; false when it was not there.
    pub fn delete<V>(&self, table: &Table<V>, key: &str) -> Result<bool, StateError> {
        let mut existed = false;
        self.write(|txn| {
            existed = txn.open_table(table.def())?.remove(key)?.is_some();
            Ok(())
        })?;
        Ok(existed)
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StateError> {
        let run = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            f(&txn)?;
            txn.commit()?;
            Ok(())
        };
        run().map_err(|e| self.err("writing", e))
    }

    fn set_version(&self, version: u32) -> Result<(), StateError> {
        self.write(|txn| {
            txn.open_table(META)?.insert("schema_version", version)?;
            Ok(())
        })
    }

    fn err(&self, what: &str, e: impl Into<redb::Error>) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            what: what.to_string(),
            source: Box::new(e.into()),
        }
    }
}

fn open_db(path: &Path, lock_wait: Duration) -> Result<Database, StateError> {
    let deadline = Instant::now() + lock_wait;
    loop {
        match Database::create(path) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StateError::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(StateError::Db {
                    path: path.to_path_buf(),
                    what: "opening".into(),
                    source: Box::new(e.into()),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Thing {
        n: u32,
        #[serde(default)]
        tag: String,
    }

    const THINGS: Table<Thing> = Table::new("test.things.v1");

    #[test]
    fn typed_round_trip_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = StateDb::open(dir.path()).expect("open");
            assert_eq!(db.version().expect("version"), SCHEMA_VERSION);
            assert!(db.all(&THINGS).expect("all").is_empty());
            db.put(
                &THINGS,
                "a",
                &Thing {
                    n: 1,
                    tag: "x".into(),
                },
            )
            .expect("put");
            db.put(
                &THINGS,
                "b",
                &Thing {
                    n: 2,
                    tag: String::new(),
                },
            )
            .expect("put");
            assert!(db.delete(&THINGS, "b").expect("delete"));
            assert!(!db.delete(&THINGS, "b").expect("delete again"));
        }
        let db = StateDb::open(dir.path()).expect("reopen");
        let all = db.all(&THINGS).expect("all");
        assert_eq!(all.len(), 1);
        assert_eq!(
            all["a"],
            Thing {
                n: 1,
                tag: "x".into()
            }
        );
    }

    #[test]
    fn a_second_open_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = StateDb::open(dir.path()).expect("open");
        let err =
            StateDb::open_waiting(dir.path(), Duration::from_millis(100)).expect_err("second");
        assert!(err.to_string().contains("another auraed"), "{err}");
    }
}
