//! The client config file (`~/.aurae/config`) that points `aer` and
//! aurae-client at the client identity and the daemon socket.

use std::path::Path;

use serde::Serialize;

use super::error::PkiError;

#[derive(Serialize)]
struct ClientConfig<'a> {
    auth: Auth<'a>,
    system: System<'a>,
}

#[derive(Serialize)]
struct Auth<'a> {
    ca_crt: &'a Path,
    client_crt: &'a Path,
    client_key: &'a Path,
}

#[derive(Serialize)]
struct System<'a> {
    socket: &'a Path,
}

/// TOML of a client config; `path` is only used in the error.
pub(super) fn render(
    path: &Path,
    ca_crt: &Path,
    client_crt: &Path,
    client_key: &Path,
    socket: &Path,
) -> Result<String, PkiError> {
    let config = ClientConfig {
        auth: Auth {
            ca_crt,
            client_crt,
            client_key,
        },
        system: System { socket },
    };
    let body = toml::to_string(&config).map_err(|source| PkiError::Config {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("# Written by auraed's PKI init: the mTLS identity of this client and the daemon to reach.\n{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_auth_and_system_tables() {
        let text = render(
            Path::new("/c"),
            Path::new("/p/ca.crt"),
            Path::new("/p/_signed.client.admin.crt"),
            Path::new("/p/client.admin.key"),
            Path::new("/run/aurae.sock"),
        )
        .expect("render");
        let value: toml::Table = text.parse().expect("valid toml");
        assert_eq!(value["auth"]["ca_crt"].as_str(), Some("/p/ca.crt"));
        assert_eq!(
            value["auth"]["client_crt"].as_str(),
            Some("/p/_signed.client.admin.crt")
        );
        assert_eq!(
            value["auth"]["client_key"].as_str(),
            Some("/p/client.admin.key")
        );
        assert_eq!(value["system"]["socket"].as_str(), Some("/run/aurae.sock"));
    }
}
