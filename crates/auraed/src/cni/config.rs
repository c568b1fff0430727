//! The network configurations of a conf dir, read as libcni and kubelet's
//! runtimes read them: files ending in `.conflist`, `.conf` or `.json`, in
//! name order; a `.conf` (one plugin) becomes a list of one. The first
//! readable one is the default network; others are chosen by name.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::CniError;

/// CNI versions whose configuration and result layout this runtime speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];
/// Largest configuration file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most files of a conf dir looked at.
const MAX_FILES: usize = 1000;

/// One network: its plugins, each as the JSON object the admin wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<Map<String, Value>>,
    /// The file it came from, for messages.
    pub source: PathBuf,
}

impl NetworkConfigList {
    /// Parses one file's content; `.conf` and `.json` hold one plugin
    /// unless they have a `plugins` list.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, CniError> {
        let bad = |reason: String| CniError::BadConfig {
            path: path.to_path_buf(),
            reason,
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Value::Object(mut top) = value else {
            return Err(bad("not a JSON object".into()));
        };
        let name = string_field(&top, "name").map_err(&bad)?;
        if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
            return Err(bad(format!(
                "network name {name:?} must be 1 to 128 printable characters"
            )));
        }
        let cni_version = string_field(&top, "cniVersion").map_err(&bad)?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(bad(format!(
                "cniVersion {cni_version:?} is not supported: use one of {SUPPORTED_VERSIONS:?}"
            )));
        }
        let disable_check = top
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let plugins = match top.remove("plugins") {
            Some(Value::Array(list)) => list
                .into_iter()
                .enumerate()
                .map(|(i, p)| match p {
                    Value::Object(p) => Ok(p),
                    _ => Err(bad(format!("plugins[{i}] is not an object"))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(bad("plugins is not a list".into())),
            None => vec![top],
        };
        if plugins.is_empty() {
            return Err(bad("plugins is empty".into()));
        }
        for (i, p) in plugins.iter().enumerate() {
            let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
            check_plugin_type(kind).map_err(|why| bad(format!("plugins[{i}]: {why}")))?;
        }
        Ok(Self {
            name,
            cni_version,
            disable_check,
            plugins,
            source: path.to_path_buf(),
        })
    }

    pub fn plugin_type(plugin: &Map<String, Value>) -> &str {
        plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Whether a plugin of the list declares `capabilities.<cap>: true`.
    pub fn has_capability(&self, cap: &str) -> bool {
        self.plugins.iter().any(|p| declares(p, cap))
    }

    /// The whole list as JSON, as it is recorded for a later DEL.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins,
        })
    }
}

/// Whether `plugin` declares `capabilities.<cap>: true`.
pub fn declares(plugin: &Map<String, Value>, cap: &str) -> bool {
    plugin
        .get("capabilities")
        .and_then(|c| c.get(cap))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn string_field(obj: &Map<String, Value>, field: &str) -> Result<String, String> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{field} is not a string")),
        None => Err(format!("{field} is missing")),
    }
}

/// A plugin type is a file name in the plugin directories, nothing else.
fn check_plugin_type(kind: &str) -> Result<(), String> {
    if kind.is_empty() {
        return Err("type is missing".into());
    }
    if kind.len() > 128
        || kind.starts_with('.')
        || !kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "type {kind:?} is not a plugin file name ([A-Za-z0-9._-], no leading dot)"
        ));
    }
    Ok(())
}

/// The candidate files of `dir`, in name order; a missing dir has none.
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CniError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .filter(|p| p.is_file())
        .take(MAX_FILES)
        .collect();
    files.sort();
    Ok(files)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, CniError> {
    let read = |source| CniError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    fs::File::open(path)
        .map_err(read)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(CniError::BadConfig {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    Ok(bytes)
}

/// Every readable network of `dir`, in file name order; unreadable files
/// are skipped with a warning (as libcni's users do), and a later file with
/// an already seen name is ignored.
pub fn load_all(dir: &Path) -> Result<Vec<NetworkConfigList>, CniError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for path in conf_files(dir)? {
        match read_bounded(&path).and_then(|b| NetworkConfigList::parse(&path, &b)) {
            Ok(list) if seen.insert(list.name.clone()) => out.push(list),
            Ok(list) => {
                tracing::warn!(file = %path.display(), network = %list.name, "ignoring a second CNI configuration of the same network")
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain::chain(&e), "ignoring an unreadable CNI configuration")
            }
        }
    }
    Ok(out)
}

/// The network `name`, or the default (the first) when `name` is None.
pub fn load(dir: &Path, name: Option<&str>) -> Result<NetworkConfigList, CniError> {
    let all = load_all(dir)?;
    match name {
        None => all.into_iter().next().ok_or_else(|| CniError::NoConfig {
            dir: dir.to_path_buf(),
        }),
        Some(name) => {
            let known: Vec<String> = all.iter().map(|l| l.name.clone()).collect();
            all.into_iter()
                .find(|l| l.name == name)
                .ok_or_else(|| CniError::UnknownNetwork {
                    name: name.to_string(),
                    dir: dir.to_path_buf(),
                    known,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, content: &str) {
        fs::write(dir.join(file), content).expect("write");
    }

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"net-b","plugins":[
        {"type":"bridge","bridge":"b0","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}},
        {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn the_first_file_in_name_order_is_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "20-b.conflist", LIST);
        write(
            dir.path(),
            "10-a.conf",
            r#"{"cniVersion":"0.4.0","name":"net-a","type":"bridge"}"#,
        );
        write(dir.path(), "00-ignored.txt", "not a config");
        let list = load(dir.path(), None).expect("default");
        assert_eq!(list.name, "net-a");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins.len(), 1, "a .conf is a list of one");
        assert_eq!(NetworkConfigList::plugin_type(&list.plugins[0]), "bridge");
        assert!(!list.has_capability("portMappings"));
        let b = load(dir.path(), Some("net-b")).expect("by name");
        assert_eq!(b.plugins.len(), 2);
        assert!(b.has_capability("portMappings"));
        assert_eq!(b.source, dir.path().join("20-b.conflist"));
    }

    #[test]
    fn unreadable_files_are_skipped_and_unknown_names_list_the_known_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "00-broken.conflist", "{");
        write(
            dir.path(),
            "01-old.conf",
            r#"{"cniVersion":"0.2.0","name":"old","type":"bridge"}"#,
        );
        write(dir.path(), "10-b.conflist", LIST);
        assert_eq!(load(dir.path(), None).expect("default").name, "net-b");
        let err = load(dir.path(), Some("nope")).expect_err("unknown");
        assert!(
            matches!(&err, CniError::UnknownNetwork { known, .. } if known == &["net-b"]),
            "{err}"
        );
    }

    #[test]
    fn an_empty_or_missing_dir_has_no_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            load(dir.path(), None),
            Err(CniError::NoConfig { .. })
        ));
        assert!(matches!(
            load(&dir.path().join("missing"), None),
            Err(CniError::NoConfig { .. })
        ));
    }

    #[test]
    fn refuses_bad_configurations_with_the_reason() {
        let p = Path::new("/x.conflist");
        for (content, reason) in [
            (r#"[]"#, "not a JSON object"),
            (r#"{"cniVersion":"1.0.0"}"#, "name is missing"),
            (r#"{"cniVersion":"1.0.0","name":""}"#, "must be 1 to 128"),
            (
                r#"{"name":"n","cniVersion":"0.1.0","type":"bridge"}"#,
                "not supported",
            ),
            (
                r#"{"name":"n","cniVersion":1,"type":"bridge"}"#,
                "cniVersion is not a string",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
                "plugins is empty",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":{}}"#,
                "plugins is not a list",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[1]}"#,
                "plugins[0] is not an object",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{}]}"#,
                "type is missing",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../../bin/sh"}]}"#,
                "not a plugin file name",
            ),
            (
                r#"{"name":"n","cniVersion":"1.0.0","type":".."}"#,
                "not a plugin file name",
            ),
        ] {
            let err = NetworkConfigList::parse(p, content.as_bytes()).expect_err(content);
            assert!(err.to_string().contains(reason), "{content}: {err}");
        }
    }

    #[test]
    fn the_same_name_twice_keeps_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "10-b.conflist", LIST);
        write(
            dir.path(),
            "20-b.conf",
            r#"{"cniVersion":"1.0.0","name":"net-b","type":"ptp"}"#,
        );
        let all = load_all(dir.path()).expect("all");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].plugins.len(), 2);
    }
}
