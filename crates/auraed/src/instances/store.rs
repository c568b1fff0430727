//! The instances' table in the state database: written before anything of
//! an instance exists on the host, so that a daemon killed mid-Spawn (or
//! with instances running) finds at its next start what to remove.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::process::DetachedRecord;
use crate::state::Table;

/// One instance as stored (the layout of `instances.instances.v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Its address in the pool, taken by no other instance while recorded.
    pub address: Ipv4Addr,
    pub tap: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    /// The hypervisor, once started.
    #[serde(default)]
    pub run: Option<DetachedRecord>,
}

/// The table: instance name -> record.
pub const INSTANCES: Table<InstanceRecord> = Table::new("instances.instances.v1");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateDb;

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = InstanceRecord {
            address: Ipv4Addr::new(10, 92, 0, 2),
            tap: "vt0000-00000000".into(),
            memory_mib: 256,
            vcpus: 1,
            run: None,
        };
        {
            let db = StateDb::open(dir.path()).expect("open");
            db.put(&INSTANCES, "a", &rec).expect("put");
        }
        let db = StateDb::open(dir.path()).expect("reopen");
        assert_eq!(db.all(&INSTANCES).expect("all")["a"], rec);
    }
}
