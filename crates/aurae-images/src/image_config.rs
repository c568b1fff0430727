//! The part of an image's configuration blob (OCI or Docker) that says how to
//! run it, and the layer diff IDs used to verify unpacked layers.

use serde::Deserialize;

/// How the image says to run it (`config` of the OCI image configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as written in the image.
    pub user: Option<String>,
}

impl ImageRunConfig {
    /// The process arguments the image runs by default: entrypoint then cmd.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

/// A parsed configuration blob.
#[derive(Debug, Clone, Default)]
pub struct ParsedImageConfig {
    pub run: ImageRunConfig,
    /// `rootfs.diff_ids`: the digest of each uncompressed layer, lowest first.
    pub diff_ids: Vec<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    config: Option<RawRun>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
}

#[derive(Deserialize)]
struct RawRun {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Parses an OCI (`application/vnd.oci.image.config.v1+json`) or Docker
/// (`application/vnd.docker.container.image.v1+json`) image configuration.
pub fn parse_image_config(bytes: &[u8]) -> Result<ParsedImageConfig, String> {
    let raw: RawConfig = serde_json::from_slice(bytes)
        .map_err(|e| format!("the image configuration is not valid JSON: {e}"))?;
    let run = raw
        .config
        .map_or_else(ImageRunConfig::default, |c| ImageRunConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
        });
    Ok(ParsedImageConfig {
        run,
        diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
        os: raw.os,
        architecture: raw.architecture,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_oci_and_docker_configs() {
        let c = parse_image_config(
            br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/","Entrypoint":null,"User":""},
                "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#,
        )
        .unwrap();
        assert_eq!(c.run.cmd, vec!["sh"]);
        assert_eq!(c.run.env, vec!["PATH=/bin"]);
        assert!(c.run.entrypoint.is_empty());
        assert_eq!(c.run.working_dir.as_deref(), Some("/"));
        assert_eq!(c.run.user, None);
        assert_eq!(c.diff_ids, vec!["sha256:aa"]);
        assert_eq!(c.run.argv(), vec!["sh"]);

        let c = parse_image_config(
            br#"{"config":{"Entrypoint":["/bin/app","-v"],"Cmd":["x"],"User":"1000:1000"}}"#,
        )
        .unwrap();
        assert_eq!(c.run.argv(), vec!["/bin/app", "-v", "x"]);
        assert_eq!(c.run.user.as_deref(), Some("1000:1000"));

        let c = parse_image_config(b"{}").unwrap();
        assert_eq!(c.run, ImageRunConfig::default());
        assert!(parse_image_config(b"not json").is_err());
    }
}
