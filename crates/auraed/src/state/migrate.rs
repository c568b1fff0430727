//! Bringing an older daemon's state into the current schema, once, at open.
//!
//! Version 0 -> 1: the schedule registry lived in its own database,
//! `schedule.redb` (table `executables_v1`: name -> (command, comment,
//! enabled)). Its rows are copied into `schedule.units.v1` and the old file
//! is renamed to `schedule.redb.migrated`, so the copy happens once and the
//! original stays for inspection.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{StateDb, StateError, Table, SCHEMA_VERSION};

const LEGACY_SCHEDULE_FILE: &str = "schedule.redb";
const LEGACY_EXECUTABLES: TableDefinition<&str, (&str, &str, bool)> =
    TableDefinition::new("executables_v1");

/// The schedule unit as version 1 stores it (the schedule module owns the
/// table and reads it with the same layout).
#[derive(Debug, Serialize, Deserialize)]
struct UnitV1 {
    command: String,
    comment: String,
    enabled: bool,
}

const UNITS_V1: Table<UnitV1> = Table::new("schedule.units.v1");

pub(super) fn run(db: &StateDb, state_dir: &Path) -> Result<(), StateError> {
    let found = db.version()?;
    if found > SCHEMA_VERSION {
        return Err(StateError::TooNew {
            path: db.path.clone(),
            found,
        });
    }
    if found < 1 {
        import_legacy_schedule(db, state_dir)?;
        db.set_version(1)?;
    }
    Ok(())
}

fn import_legacy_schedule(db: &StateDb, state_dir: &Path) -> Result<(), StateError> {
    let legacy = state_dir.join(LEGACY_SCHEDULE_FILE);
    if !legacy.exists() {
        return Ok(());
    }
    let err = |e: redb::Error| StateError::Migrate {
        path: legacy.clone(),
        source: Box::new(e),
    };
    let rows = {
        let old = Database::open(&legacy).map_err(|e| err(e.into()))?;
        let txn = old.begin_read().map_err(|e| err(e.into()))?;
        let mut rows = Vec::new();
        match txn.open_table(LEGACY_EXECUTABLES) {
            Ok(table) => {
                for row in table.iter().map_err(|e| err(e.into()))? {
                    let (k, v) = row.map_err(|e| err(e.into()))?;
                    let (command, comment, enabled) = v.value();
                    rows.push((
                        k.value().to_string(),
                        UnitV1 {
                            command: command.to_string(),
                            comment: comment.to_string(),
                            enabled,
                        },
                    ));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(err(e.into())),
        }
        rows
    };
    for (name, unit) in &rows {
        db.put(&UNITS_V1, name, unit)?;
    }
    let done = state_dir.join(format!("{LEGACY_SCHEDULE_FILE}.migrated"));
    std::fs::rename(&legacy, &done).map_err(|source| StateError::Dir {
        path: done.clone(),
        source,
    })?;
    tracing::info!(
        from = %legacy.display(),
        to = %db.path.display(),
        units = rows.len(),
        "migrated the schedule registry into the state database"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_schedule_database_is_imported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let old = Database::create(dir.path().join(LEGACY_SCHEDULE_FILE)).expect("create");
            let txn = old.begin_write().expect("txn");
            {
                let mut t = txn.open_table(LEGACY_EXECUTABLES).expect("table");
                t.insert("web", ("sleep 100", "the web", true))
                    .expect("insert");
                t.insert("db", ("sleep 200", "", false)).expect("insert");
            }
            txn.commit().expect("commit");
        }
        let db = StateDb::open(dir.path()).expect("open migrates");
        let units = db.all(&UNITS_V1).expect("units");
        assert_eq!(units.len(), 2);
        assert_eq!(units["web"].command, "sleep 100");
        assert!(units["web"].enabled);
        assert!(!units["db"].enabled);
        assert!(!dir.path().join(LEGACY_SCHEDULE_FILE).exists());
        assert!(dir.path().join("schedule.redb.migrated").exists());
        drop(db);
        // A second open finds version 1 and leaves everything as it is.
        let db = StateDb::open(dir.path()).expect("reopen");
        assert_eq!(db.all(&UNITS_V1).expect("units").len(), 2);
    }
}
