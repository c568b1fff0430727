use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::*;

const CONFIG: &str = r#"
[auth]
ca_crt = "~/.aurae/pki/ca.crt"
client_crt = "pki/_signed.client.admin.crt"
client_key = "/abs/client.admin.key"

[system]
socket = "~/aurae.sock"
"#;

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn parses_the_original_aurae_layout() {
    let c = AuraeConfig::parse(CONFIG).expect("parse");
    assert_eq!(c.auth.ca_crt, PathBuf::from("~/.aurae/pki/ca.crt"));
    assert_eq!(c.system.socket.as_deref(), Some("~/aurae.sock"));
    assert_eq!(c.system.address, None);
    assert_eq!(c.system.server_name(), DEFAULT_SERVER_NAME);
}

#[test]
fn system_table_is_optional_and_unknown_keys_are_tolerated() {
    let c = AuraeConfig::parse("[auth]\nca_crt='a'\nclient_crt='b'\nclient_key='c'\nfuture='x'\n")
        .expect("parse");
    assert_eq!(c.system, SystemConfig::default());
    let c = AuraeConfig::parse(
        "[auth]\nca_crt='a'\nclient_crt='b'\nclient_key='c'\n[system]\naddress='[::1]:8080'\nserver_name='n'\n",
    )
    .expect("parse");
    assert_eq!(c.system.address.as_deref(), Some("[::1]:8080"));
    assert_eq!(c.system.server_name(), "n");
}

#[test]
fn missing_auth_is_a_parse_error() {
    let err = AuraeConfig::parse("[system]\nsocket='/s'\n").expect_err("no auth");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn loading_expands_tilde_and_anchors_relative_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let path = write(dir.path(), "conf/config", CONFIG);
    let (found, c) = AuraeConfig::discover_with(Some(path.as_os_str()), Some(&home)).expect("load");
    assert_eq!(found, path);
    assert_eq!(c.auth.ca_crt, home.join(".aurae/pki/ca.crt"));
    assert_eq!(
        c.auth.client_crt,
        dir.path().join("conf/pki/_signed.client.admin.crt")
    );
    assert_eq!(c.auth.client_key, PathBuf::from("/abs/client.admin.key"));
    assert_eq!(
        c.system.socket,
        Some(home.join("aurae.sock").display().to_string())
    );
}

#[test]
fn env_var_wins_and_is_tilde_expanded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().to_path_buf();
    write(&home, ".aurae/config", CONFIG);
    let chosen = write(&home, "elsewhere/config", CONFIG);
    let (found, _) =
        AuraeConfig::discover_with(Some(OsStr::new("~/elsewhere/config")), Some(&home))
            .expect("load");
    assert_eq!(found, chosen);
}

#[test]
fn without_env_the_user_config_comes_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().to_path_buf();
    let user = write(&home, ".aurae/config", CONFIG);
    let (found, _) = AuraeConfig::discover_with(None, Some(&home)).expect("load");
    assert_eq!(found, user);
    // An empty variable counts as unset.
    let (found, _) = AuraeConfig::discover_with(Some(OsStr::new("")), Some(&home)).expect("load");
    assert_eq!(found, user);
    assert_eq!(
        candidates(None, Some(&home)).expect("candidates"),
        [
            home.join(".aurae/config"),
            PathBuf::from("/etc/aurae/config")
        ]
    );
    assert_eq!(
        candidates(None, None).expect("candidates"),
        [PathBuf::from("/etc/aurae/config")]
    );
}

#[test]
fn a_missing_env_config_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().to_path_buf();
    write(&home, ".aurae/config", CONFIG);
    let missing = home.join("nope/config");
    let err =
        AuraeConfig::discover_with(Some(missing.as_os_str()), Some(&home)).expect_err("missing");
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn reading_a_missing_file_names_it() {
    let err = AuraeConfig::from_path("/nonexistent/aurae/config").expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/aurae/config"),
        "{err}"
    );
    assert!(matches!(err, ConfigError::Read { .. }));
}

#[test]
fn an_invalid_file_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "config", "[auth\n");
    let err = AuraeConfig::from_path(&path).expect_err("invalid");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_missing_user_config_and_an_unreadable_system_one_are_both_named() {
    let err = ConfigError::Denied {
        missing: vec![PathBuf::from("/home/u/.aurae/config")],
        path: PathBuf::from("/etc/aurae/config"),
        blocked_dir: Some(PathBuf::from("/etc/aurae")),
    };
    let text = err.to_string();
    assert!(
        text.starts_with(
            "no client config at /home/u/.aurae/config, and /etc/aurae/config cannot be read \
             (the directory /etc/aurae is not accessible to this user): run aer as root"
        ),
        "{text}"
    );
}
