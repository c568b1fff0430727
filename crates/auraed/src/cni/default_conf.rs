//! The network `--bootstrap` (and so `hack/up.sh`) writes when the conf dir
//! holds none: a bridge with host-local addresses on a private /16, the
//! containers' traffic masqueraded behind the host's address, and portmap
//! for published ports, as podman and nerdctl ship theirs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::config::conf_files;
use super::error::CniError;

pub const DEFAULT_NETWORK: &str = "aurae";
pub const DEFAULT_BRIDGE: &str = "aurae0";
pub const DEFAULT_SUBNET: &str = "10.91.0.0/16";
pub const DEFAULT_FILE: &str = "10-aurae.conflist";

/// The bridge network `name` on `bridge` with addresses from `subnet`.
pub fn bridge_network(name: &str, bridge: &str, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
}

/// Writes the default network into `dir` unless it holds a configuration
/// already; returns the file written.
pub fn write_default(dir: &Path) -> Result<Option<PathBuf>, CniError> {
    if !conf_files(dir)?.is_empty() {
        return Ok(None);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CniError::Read { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(DEFAULT_FILE);
    let text = serde_json::to_string_pretty(&bridge_network(
        DEFAULT_NETWORK,
        DEFAULT_BRIDGE,
        DEFAULT_SUBNET,
    ))
    .unwrap_or_default();
    // Written whole under a temporary name: a reader never sees half a file.
    let tmp = dir.join(format!(".{DEFAULT_FILE}.tmp"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::config::load;

    #[test]
    fn writes_the_default_once_and_it_loads_as_the_default_network() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("net.d");
        let written = write_default(&conf).expect("write");
        assert_eq!(written, Some(conf.join(DEFAULT_FILE)));
        let list = load(&conf, None).expect("load");
        assert_eq!(list.name, "aurae");
        assert_eq!(list.plugins[0]["bridge"], "aurae0");
        assert_eq!(list.plugins[0]["ipMasq"], true);
        assert_eq!(
            list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.91.0.0/16"
        );
        assert!(list.has_capability("portMappings"));
        assert_eq!(
            write_default(&conf).expect("again"),
            None,
            "never overwrites"
        );
    }

    #[test]
    fn an_existing_configuration_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("99-mine.conf"), "{}").expect("write");
        assert_eq!(write_default(dir.path()).expect("write"), None);
        assert!(!dir.path().join(DEFAULT_FILE).exists());
    }
}
