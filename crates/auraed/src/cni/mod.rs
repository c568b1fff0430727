//! Container networking by CNI (the Container Network Interface, spec
//! 1.0.0): a cell's network namespace is connected by the plugins of a
//! network configuration in the conf dir, and disconnected by them again.
//!
//! The flow: `config` reads the conf dir (the first file in name order is
//! the default network), `chain` runs a configuration list's plugins for
//! ADD/DEL/CHECK with `prevResult` and capabilities, `exec` runs one plugin
//! (environment, stdin, stdout, deadline), `result` types what plugins
//! answer. [`Cni`] records every attachment in the state database (`store`)
//! before ADD, so DEL always runs: at the end of a cell, after a failure
//! half-way, and for what a crashed daemon left.
//!
//! No crate fits: `cni-plugin`/`rscni-plugin` are for writing plugins, and
//! `cni`/`rust-cni` (0.1) are young, untyped and unmaintained.

mod chain;
mod config;
mod default_conf;
mod error;
mod exec;
mod result;
#[cfg(test)]
mod result_props;
mod store;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use chain::{Capabilities, Chain};
pub use config::{load, load_all, NetworkConfigList, SUPPORTED_VERSIONS};
pub use default_conf::{
    bridge_network, write_default, DEFAULT_BRIDGE, DEFAULT_FILE, DEFAULT_NETWORK, DEFAULT_SUBNET,
};
pub use error::CniError;
pub use exec::{PluginExec, ProcessExec, PLUGIN_TIMEOUT};
pub use result::{CniResult, Dns, PluginError};
use store::{AttachmentRecord, ATTACHMENTS};

use crate::state::StateDb;

/// The interface name inside the cell.
pub const IFNAME: &str = "eth0";

/// The protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A host port forwarded to a port of the cell (portmap's `portMappings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// What to connect.
#[derive(Debug, Clone)]
pub struct AttachRequest<'a> {
    /// The cell the attachment belongs to.
    pub owner: &'a str,
    /// The network namespace file (a pinned nsfs file).
    pub netns: &'a Path,
    /// A network by name, or None for the default (the first in the conf dir).
    pub network: Option<&'a str>,
    pub ports: &'a [PortMapping],
}

/// A connected namespace.
#[derive(Debug, Clone)]
pub struct Attached {
    pub network: String,
    pub container_id: String,
    pub ip: Option<IpAddr>,
    pub result: CniResult,
}

/// The CNI runtime of the daemon.
pub struct Cni {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    exec: Arc<dyn PluginExec>,
    state: Arc<StateDb>,
    /// Held from the check that a host port is free to its record.
    publishing: Mutex<()>,
}

impl Cni {
    /// Networks from `conf_dir`, plugins from `bin_dirs`, attachments
    /// recorded in `state`.
    pub fn new(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>, state: Arc<StateDb>) -> Self {
        Self::with_exec(
            conf_dir,
            bin_dirs,
            state,
            Arc::new(ProcessExec {
                timeout: PLUGIN_TIMEOUT,
            }),
        )
    }

    pub fn with_exec(
        conf_dir: PathBuf,
        bin_dirs: Vec<PathBuf>,
        state: Arc<StateDb>,
        exec: Arc<dyn PluginExec>,
    ) -> Self {
        Self {
            conf_dir,
            bin_dirs,
            exec,
            state,
            publishing: Mutex::new(()),
        }
    }

    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    fn chain(&self) -> Chain<'_> {
        Chain {
            exec: self.exec.as_ref(),
            bin_dirs: &self.bin_dirs,
        }
    }

    /// The default network's name; None when the conf dir has no network.
    /// Read at each call, as kubelet's runtimes do: a configuration written
    /// later is used from then on.
    pub fn default_network(&self) -> Result<Option<String>, CniError> {
        match load(&self.conf_dir, None) {
            Ok(list) => Ok(Some(list.name)),
            Err(CniError::NoConfig { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// ADD: connects `req.netns` to the network. The attachment is recorded
    /// first; if ADD fails, DEL runs at once and the error is returned.
    /// Blocking (runs plugins).
    pub fn attach(&self, req: &AttachRequest<'_>) -> Result<Attached, CniError> {
        let list = load(&self.conf_dir, req.network)?;
        if !req.ports.is_empty() && !list.has_capability("portMappings") {
            return Err(CniError::NoPortMapping { network: list.name });
        }
        let mut record = AttachmentRecord {
            owner: req.owner.to_string(),
            container_id: container_id(req.owner),
            netns: req.netns.to_path_buf(),
            ifname: IFNAME.to_string(),
            network: list.name.clone(),
            source: list.source.clone(),
            config: list.to_json(),
            capabilities: capabilities(req.ports),
            result: None,
        };
        self.record_unless_published(&record, req.ports)?;
        let rt = record.runtime_args();
        match self.chain().add(&list, &rt, &record.capabilities) {
            Ok((result, raw)) => {
                record.result = Some(raw);
                self.state
                    .put(&ATTACHMENTS, &record.container_id, &record)?;
                tracing::info!(cell = req.owner, network = %list.name, container_id = %record.container_id, ip = ?result.container_ip(), "cell connected");
                Ok(Attached {
                    network: list.name,
                    container_id: record.container_id,
                    ip: result.container_ip(),
                    result,
                })
            }
            Err(e) => {
                // What the plugins that succeeded set up goes now, not at the next start.
                if let Err(del) = self.del(&record) {
                    tracing::warn!(cell = req.owner, error = %crate::error_chain::chain(&del), "DEL after a failed ADD; retried when the cell is removed");
                }
                Err(e)
            }
        }
    }

    /// Records `record` unless another attachment publishes one of `ports`
    /// already (portmap would shadow one rule by the other, silently).
    fn record_unless_published(
        &self,
        record: &AttachmentRecord,
        ports: &[PortMapping],
    ) -> Result<(), CniError> {
        let _one_at_a_time = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        if !ports.is_empty() {
            for other in self.state.all(&ATTACHMENTS)?.into_values() {
                let published = other.published();
                if let Some(p) = ports
                    .iter()
                    .find(|p| published.contains(&(u64::from(p.host_port), p.protocol.as_str())))
                {
                    return Err(CniError::PortInUse {
                        port: p.host_port,
                        protocol: p.protocol.as_str(),
                        owner: other.owner,
                    });
                }
            }
        }
        self.state.put(&ATTACHMENTS, &record.container_id, record)?;
        Ok(())
    }

    /// DEL of every attachment of `owner`; an attachment whose DEL fails
    /// stays recorded and is retried at the next call (or daemon start).
    /// Blocking; nothing to do is fine.
    pub fn detach(&self, owner: &str) -> Result<(), CniError> {
        let mut first = None;
        for record in self.records(owner)? {
            if let Err(e) = self.del(&record) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// CHECK of every attachment of `owner`.
    pub fn check(&self, owner: &str) -> Result<(), CniError> {
        for record in self.records(owner)? {
            let list = record_list(&record)?;
            let prev = record.result.clone().unwrap_or(Value::Null);
            self.chain()
                .check(&list, &record.runtime_args(), &record.capabilities, &prev)?;
        }
        Ok(())
    }

    /// The owners that have recorded attachments (to find leftovers).
    pub fn owners(&self) -> Result<Vec<String>, CniError> {
        let mut owners: Vec<String> = self
            .state
            .all(&ATTACHMENTS)?
            .into_values()
            .map(|r| r.owner)
            .collect();
        owners.sort();
        owners.dedup();
        Ok(owners)
    }

    fn records(&self, owner: &str) -> Result<Vec<AttachmentRecord>, CniError> {
        Ok(self
            .state
            .all(&ATTACHMENTS)?
            .into_values()
            .filter(|r| r.owner == owner)
            .collect())
    }

    fn del(&self, record: &AttachmentRecord) -> Result<(), CniError> {
        let list = record_list(record)?;
        self.chain().del(
            &list,
            &record.runtime_args(),
            &record.capabilities,
            record.result.as_ref(),
        )?;
        self.state.delete(&ATTACHMENTS, &record.container_id)?;
        tracing::info!(cell = %record.owner, network = %record.network, container_id = %record.container_id, "cell disconnected");
        Ok(())
    }
}

/// The configuration list a record was added with.
fn record_list(record: &AttachmentRecord) -> Result<NetworkConfigList, CniError> {
    NetworkConfigList::parse(&record.source, record.config.to_string().as_bytes())
}

/// Unique per attachment, so that a leftover of an earlier run of the same
/// cell never mixes with a new one: `aurae-<cell>-<nanoseconds, hex>`.
fn container_id(owner: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("aurae-{owner}-{:x}", nanos & 0xffff_ffff_ffff)
}

/// portmap's `portMappings` capability, when there are ports.
fn capabilities(ports: &[PortMapping]) -> Capabilities {
    let mut caps = Capabilities::new();
    if !ports.is_empty() {
        let list: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol.as_str(),
                })
            })
            .collect();
        caps.insert("portMappings".into(), Value::Array(list));
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::chain::tests::FakeExec;
    use super::*;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("an IP address")
    }

    fn setup(
        plugins: &str,
        fail: Vec<(&'static str, &'static str)>,
    ) -> (tempfile::TempDir, Cni, Arc<FakeExec>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::write(
            conf.join("10-t.conflist"),
            format!(r#"{{"cniVersion":"1.0.0","name":"t","plugins":{plugins}}}"#),
        )
        .expect("write");
        let state = Arc::new(StateDb::open(&dir.path().join("state")).expect("state"));
        let exec = Arc::new(FakeExec {
            fail,
            ..Default::default()
        });
        let cni = Cni::with_exec(conf, vec!["/bin".into()], state, exec.clone());
        (dir, cni, exec)
    }

    const BRIDGE_PORTMAP: &str =
        r#"[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]"#;

    fn req<'a>(owner: &'a str, ports: &'a [PortMapping]) -> AttachRequest<'a> {
        AttachRequest {
            owner,
            netns: Path::new("/run/ns/net"),
            network: None,
            ports,
        }
    }

    #[test]
    fn attach_records_before_add_and_detach_dels_with_the_result() {
        let (_dir, cni, exec) = setup(BRIDGE_PORTMAP, vec![]);
        let ports = [PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Udp,
        }];
        let attached = cni.attach(&req("web", &ports)).expect("attach");
        assert_eq!(attached.network, "t");
        assert_eq!(attached.ip, Some(ip("10.9.0.2")));
        assert!(attached.container_id.starts_with("aurae-web-"));
        assert_eq!(cni.owners().expect("owners"), ["web"]);
        let calls = exec.calls();
        assert_eq!(
            calls[1].2["runtimeConfig"]["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "udp"}])
        );
        cni.check("web").expect("check");
        cni.detach("web").expect("detach");
        let calls = exec.calls();
        let dels: Vec<&(String, String, Value)> = calls.iter().filter(|c| c.1 == "DEL").collect();
        assert_eq!(dels.len(), 2);
        assert_eq!(dels[0].2["prevResult"]["ips"][0]["address"], "10.9.0.2/24");
        assert!(cni.owners().expect("owners").is_empty());
        cni.detach("web").expect("nothing left to detach");
    }

    #[test]
    fn a_failed_add_is_deleted_at_once() {
        let (_dir, cni, exec) = setup(BRIDGE_PORTMAP, vec![("portmap", "ADD")]);
        let err = cni.attach(&req("web", &[])).expect_err("fails");
        assert!(matches!(err, CniError::Plugin { .. }), "{err}");
        let cmds: Vec<(String, String)> = exec.calls().into_iter().map(|c| (c.0, c.1)).collect();
        assert_eq!(
            cmds,
            [
                ("bridge".into(), "ADD".into()),
                ("portmap".into(), "ADD".into()),
                ("portmap".into(), "DEL".into()),
                ("bridge".into(), "DEL".into()),
            ]
        );
        assert!(cni.owners().expect("owners").is_empty());
    }

    #[test]
    fn a_failed_del_stays_recorded_for_a_retry() {
        let (_dir, cni, _exec) = setup(BRIDGE_PORTMAP, vec![("bridge", "DEL")]);
        cni.attach(&req("db", &[])).expect("attach");
        assert!(cni.detach("db").is_err());
        assert_eq!(cni.owners().expect("owners"), ["db"]);
    }

    #[test]
    fn ports_need_a_portmap_plugin() {
        let (_dir, cni, exec) = setup(r#"[{"type":"bridge"}]"#, vec![]);
        let ports = [PortMapping {
            host_port: 1,
            container_port: 2,
            protocol: Protocol::Tcp,
        }];
        let err = cni.attach(&req("web", &ports)).expect_err("no portmap");
        assert!(matches!(err, CniError::NoPortMapping { .. }), "{err}");
        assert!(exec.calls().is_empty(), "nothing ran");
        assert_eq!(cni.default_network().expect("default"), Some("t".into()));
    }

    #[test]
    fn a_host_port_is_published_once() {
        let (_dir, cni, _exec) = setup(BRIDGE_PORTMAP, vec![]);
        let tcp = PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let udp = PortMapping {
            protocol: Protocol::Udp,
            ..tcp
        };
        cni.attach(&req("a", &[tcp])).expect("a");
        let err = cni.attach(&req("b", &[tcp])).expect_err("taken");
        assert_eq!(
            err.to_string(),
            "host port 8080/tcp is published by cell \"a\" already: pick another host port or stop that cell"
        );
        cni.attach(&req("b", &[udp])).expect("udp is another port");
        cni.detach("a").expect("detach");
        cni.attach(&req("c", &[tcp])).expect("free again");
    }
}
