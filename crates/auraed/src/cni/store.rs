//! What was added, recorded in the state database before ADD runs, so that
//! DEL can run with the same configuration after a crash of the daemon
//! (libcni keeps the same in its cache directory).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::exec::RuntimeArgs;
use crate::state::Table;

/// One network attachment of one owner (a cell), keyed by container id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    /// The cell the attachment belongs to.
    pub owner: String,
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub network: String,
    /// The configuration file it came from, for messages.
    pub source: PathBuf,
    /// The network configuration list as ADD used it.
    pub config: Value,
    /// The runtime values of capabilities (`portMappings`).
    #[serde(default)]
    pub capabilities: Map<String, Value>,
    /// The ADD's result once it succeeded; DEL and CHECK get it as prevResult.
    #[serde(default)]
    pub result: Option<Value>,
}

pub const ATTACHMENTS: Table<AttachmentRecord> = Table::new("cni.attachments.v1");

impl AttachmentRecord {
    /// The host ports it publishes, with their protocol.
    pub fn published(&self) -> Vec<(u64, &str)> {
        self.capabilities
            .get("portMappings")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|p| {
                        let port = p.get("hostPort")?.as_u64()?;
                        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("tcp");
                        Some((port, proto))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn runtime_args(&self) -> RuntimeArgs {
        RuntimeArgs {
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("AURAE_CELL".into(), self.owner.clone()),
            ],
        }
    }
}
