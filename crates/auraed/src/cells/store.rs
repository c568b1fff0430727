//! The records of cells in the state database, table `cells.cells.v1`
//! (cell name -> [`CellRecord`]), detached cells and RunCell cells alike. A
//! record is written before anything of the cell exists (`creating`),
//! updated once every container runs (`running`, with each detached
//! container's process record for adoption) and at each exit of a detached
//! container, and deleted once everything else is gone. A `creating` record found at
//! start is a start the daemon did not finish, a `bound` one a RunCell
//! whose call died with the daemon: either cell is removed.
//!
//! `bound` came after the table: it is a serde-default field (records
//! without it are detached cells, which is what they were), so the layout
//! stays compatible and needs no `cells.cells.v2`.

use std::net::IpAddr;
use std::sync::Arc;

use crate::cgroups::Limits;
use serde::{Deserialize, Serialize};

use super::error::CellError;
use crate::process::DetachedRecord;
use crate::state::{StateDb, StateError, Table};

pub(crate) const CELLS: Table<CellRecord> = Table::new("cells.cells.v1");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CellState {
    Creating,
    Running,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CellRecord {
    pub state: CellState,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    /// The cell's limits in force (records older than limits have none).
    #[serde(default)]
    pub limits: Limits,
    /// Bound to a RunCell call: ended with it, never adopted.
    #[serde(default)]
    pub bound: bool,
    pub containers: Vec<ContainerRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub name: String,
    pub image: String,
    /// The container's init and its helper, once created.
    #[serde(default)]
    pub process: Option<DetachedRecord>,
    /// Once it has exited: its code, or 128 + the signal that ended it.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// How it ended ("exited with code 3"), or why it is not known.
    #[serde(default)]
    pub message: String,
    /// Its own limits (the cell's when unset).
    #[serde(default)]
    pub limits: Limits,
    /// The OOM killer ended it.
    #[serde(default)]
    pub oom_killed: bool,
}

/// Runs `f` on the database off the async runtime (every write is durable).
pub(crate) async fn with_db<T: Send + 'static>(
    db: &Arc<StateDb>,
    cell: &str,
    f: impl FnOnce(&StateDb) -> Result<T, StateError> + Send + 'static,
) -> Result<T, CellError> {
    let db = db.clone();
    let err = |source| CellError::State {
        cell: cell.to_string(),
        source: Box::new(source),
    };
    tokio::task::spawn_blocking(move || f(&db))
        .await
        .map_err(|e| CellError::Task(e.to_string()))?
        .map_err(err)
}

pub(crate) async fn put(
    db: &Arc<StateDb>,
    cell: &str,
    record: &CellRecord,
) -> Result<(), CellError> {
    let (key, record) = (cell.to_string(), record.clone());
    with_db(db, cell, move |db| db.put(&CELLS, &key, &record)).await
}

pub(crate) async fn delete(db: &Arc<StateDb>, cell: &str) -> Result<(), CellError> {
    let key = cell.to_string();
    with_db(db, cell, move |db| db.delete(&CELLS, &key).map(|_| ())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_old_fields_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(dir.path()).expect("open");
        let record = CellRecord {
            state: CellState::Running,
            ip: Some("10.91.0.7".parse().expect("ip")),
            limits: Limits {
                pids: Some(4096),
                ..Default::default()
            },
            bound: true,
            containers: vec![ContainerRecord {
                name: "web".into(),
                image: "busybox".into(),
                process: Some(DetachedRecord {
                    pid: 12,
                    monitor_pid: 11,
                    monitor_start: 99,
                    cgroup: "aurae/cells/c/web".into(),
                    log_dir: "/l".into(),
                }),
                exit_code: None,
                message: String::new(),
                limits: Limits::default(),
                oom_killed: true,
            }],
        };
        db.put(&CELLS, "c", &record).expect("put");
        assert_eq!(db.all(&CELLS).expect("all")["c"], record);
        let minimal: CellRecord =
            serde_json::from_str(r#"{"state":"stopped","containers":[{"name":"a","image":"b"}]}"#)
                .expect("minimal");
        assert_eq!(minimal.state, CellState::Stopped);
        assert_eq!(minimal.containers[0].process, None);
        assert_eq!(minimal.limits, Limits::default());
        assert!(!minimal.containers[0].oom_killed);
        assert!(
            !minimal.bound,
            "records older than `bound` are detached cells"
        );
    }
}
