//! Every way a CNI operation can fail. Messages leave their `#[source]`
//! out: [`crate::error_chain::chain`] joins the whole chain at the edge.

use std::path::PathBuf;

use thiserror::Error;

use super::result::PluginError;
use crate::state::StateError;

#[derive(Debug, Error)]
pub enum CniError {
    #[error("no CNI network configuration (*.conflist, *.conf, *.json) in {}: start auraed with --bootstrap to write the default one, or give the cell network \"none\"", dir.display())]
    NoConfig { dir: PathBuf },
    #[error("no CNI network named {name:?} in {}: the networks there are {known:?}", dir.display())]
    UnknownNetwork {
        name: String,
        dir: PathBuf,
        known: Vec<String>,
    },
    #[error("reading the CNI configuration {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI configuration {}: {reason}", path.display())]
    BadConfig { path: PathBuf, reason: String },
    #[error("network {network:?} has no plugin with the portMappings capability (add {{\"type\": \"portmap\", \"capabilities\": {{\"portMappings\": true}}}} to its plugins): ports cannot be published")]
    NoPortMapping { network: String },
    #[error("host port {port}/{protocol} is published by cell {owner:?} already: pick another host port or stop that cell")]
    PortInUse {
        port: u16,
        protocol: &'static str,
        owner: String,
    },
    #[error("CNI plugin {plugin:?} is not in the plugin directories {dirs:?}: install containernetworking-plugins or set --cni-bin-dir")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("running CNI plugin {}", plugin.display())]
    Exec {
        plugin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin:?} did not finish {command} within {secs} s and was killed")]
    Timeout {
        plugin: String,
        command: &'static str,
        secs: u64,
    },
    #[error("CNI plugin {plugin:?} wrote more than {limit} bytes on {stream}")]
    OutputTooLarge {
        plugin: String,
        stream: &'static str,
        limit: usize,
    },
    #[error("CNI {command} of network {network:?}, plugin {plugin:?}: {error}")]
    Plugin {
        command: &'static str,
        network: String,
        plugin: String,
        error: Box<PluginError>,
    },
    #[error("CNI {command} of network {network:?}, plugin {plugin:?}: its result is not readable ({reason})")]
    BadResult {
        command: &'static str,
        network: String,
        plugin: String,
        reason: String,
    },
    #[error("recording the network attachment")]
    State(#[from] StateError),
}
