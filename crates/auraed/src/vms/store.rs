//! The VMs' table in the state database: one record per VM, durable before
//! a call is answered, so that a restarted daemon finds every VM, adopts the
//! hypervisors still running and knows which ones should be.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::process::DetachedRecord;
use crate::state::Table;

/// What the operator (or the guest) last decided about a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    /// Keep it running (restart a hypervisor that dies).
    Running,
    /// Stopped by Stop: stays off until Start.
    Stopped,
    /// The guest powered itself off: stays off until Start.
    PoweredOff,
    /// The supervisor gave up (start limit): stays off until Start.
    Failed,
}

/// One VM as stored (the layout of `vms.machines.v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    /// The reference it was created from.
    pub image: String,
    /// Digest of the base disk image.
    pub digest: String,
    /// The cached base image (read-only) and its format.
    pub base: PathBuf,
    pub format: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub want: Want,
    /// `""`/`user`, `none` or `bridge:NAME` (as given; see `net`).
    #[serde(default)]
    pub network: String,
    /// The TAP device made at each boot ("" unless on a bridge).
    #[serde(default)]
    pub tap: String,
    /// Why it is off or failed ("" when running).
    #[serde(default)]
    pub message: String,
    /// The running hypervisor, for adoption by the next daemon.
    #[serde(default)]
    pub run: Option<DetachedRecord>,
}

/// The table: VM name -> record.
pub const MACHINES: Table<VmRecord> = Table::new("vms.machines.v1");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateDb;

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = VmRecord {
            image: "http://127.0.0.1/d.qcow2".into(),
            digest: "sha256:00".into(),
            base: "/x/base".into(),
            format: "qcow2".into(),
            memory_mib: 512,
            vcpus: 1,
            want: Want::PoweredOff,
            network: "bridge:br0".into(),
            tap: "vt0000-00000000".into(),
            message: "the guest powered off".into(),
            run: None,
        };
        {
            let db = StateDb::open(dir.path()).expect("open");
            db.put(&MACHINES, "a", &rec).expect("put");
            db.put(&MACHINES, "b", &rec).expect("put");
            assert!(db.delete(&MACHINES, "b").expect("delete"));
        }
        let db = StateDb::open(dir.path()).expect("reopen");
        let all = db.all(&MACHINES).expect("load");
        assert_eq!(all.len(), 1);
        assert_eq!(all["a"], rec);
    }
}
