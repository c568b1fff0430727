//! The parent as a client of its instances: the same mTLS as any client,
//! verifying the instance's certificate by the instance's name, with the
//! client identity the parent issued itself for that instance.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use aurae_client::config::{AuraeConfig, AuthConfig, SystemConfig};
use aurae_client::Client;

use super::argv::INSTANCE_PORT;
use super::certs::InstanceFiles;
use super::error::InstanceError;
use crate::process::ProcessHandle;

/// Bound on one call to a nested auraed (health check, graph).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// A node of the instance graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    pub name: String,
    /// Why the node's own graph is missing ("" when it answered).
    pub message: String,
    pub is_root: bool,
    pub nested: Vec<GraphNode>,
}

/// How to reach one instance.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub address: String,
    config: AuraeConfig,
}

impl Target {
    pub fn new(name: &str, ip: Ipv4Addr, ca_crt: &Path, files: &InstanceFiles) -> Self {
        let address = format!("{ip}:{INSTANCE_PORT}");
        let config = AuraeConfig {
            auth: AuthConfig {
                ca_crt: ca_crt.to_path_buf(),
                client_crt: files.client_crt.clone(),
                client_key: files.client_key.clone(),
            },
            system: SystemConfig {
                socket: None,
                address: Some(address.clone()),
                server_name: Some(name.to_string()),
            },
        };
        Self {
            name: name.to_string(),
            address,
            config,
        }
    }

    /// A connected client, within [`CALL_TIMEOUT`].
    pub async fn connect(&self) -> Result<Client, String> {
        match tokio::time::timeout(CALL_TIMEOUT, Client::connect(&self.config)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(crate::error_chain::chain(&e)),
            Err(_) => Err(format!("no connection within {}s", CALL_TIMEOUT.as_secs())),
        }
    }

    async fn status(&self) -> Result<(), String> {
        let client = self.connect().await?;
        answer(client.status()).await.map(|_| ())
    }
}

/// A call's answer within [`CALL_TIMEOUT`], or why not.
async fn answer<T, E: std::error::Error>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(crate::error_chain::chain(&e)),
        Err(_) => Err(format!("no answer within {}s", CALL_TIMEOUT.as_secs())),
    }
}

/// Polls the instance's Status over mTLS, with backoff, until it answers,
/// its hypervisor exits, or `timeout` passes.
pub async fn wait_answering(
    target: &Target,
    hypervisor: &ProcessHandle,
    timeout: Duration,
) -> Result<(), InstanceError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = FIRST_RETRY;
    loop {
        let last = match target.status().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if hypervisor.is_finished() {
            return Err(InstanceError::Exited {
                name: target.name.clone(),
                detail: format!(
                    "its console is the log of pid {} (aer logs); last: {last}",
                    hypervisor.pid()
                ),
            });
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(InstanceError::NotAnswering {
                name: target.name.clone(),
                address: target.address.clone(),
                secs: timeout.as_secs(),
                detail: last,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// The instance's own graph, as a nested node; an unreachable instance is
/// listed with why.
pub async fn graph(target: &Target) -> GraphNode {
    let asked = async {
        let client = target.connect().await?;
        answer(client.instance_graph()).await
    };
    match asked.await {
        Ok(g) => {
            let mut node = crate::api::instances::graph_node(g);
            node.is_root = false;
            if node.name.is_empty() {
                node.name = target.name.clone();
            }
            node
        }
        Err(e) => GraphNode {
            name: target.name.clone(),
            message: format!("unreachable at {}: {e}", target.address),
            is_root: false,
            nested: Vec::new(),
        },
    }
}
