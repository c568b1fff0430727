//! The OCI runtime spec (config.json) of one container: the image's
//! entrypoint, command, environment, working directory and user, the cell's
//! shared namespaces by path, and the container's own cgroup.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDeviceCgroupBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    MountBuilder, RootBuilder, Spec, UserBuilder,
};

use super::error::CellError;
use super::image::RunConfig;
use super::sandbox::NamespacePaths;
use super::user::ResolvedUser;

/// PATH when the image sets none (the default of Docker and runc).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything a container's spec is made of.
pub(crate) struct SpecInput<'a> {
    pub cell: &'a str,
    pub container: &'a str,
    pub image: &'a str,
    pub config: &'a RunConfig,
    pub user: &'a ResolvedUser,
    /// Absolute path of the mounted root filesystem.
    pub rootfs: &'a Path,
    /// `linux.cgroupsPath`: absolute from the cgroup mount root, e.g. `/aurae/cells/web.scope/server.scope`.
    pub cgroups_path: &'a str,
    pub namespaces: &'a NamespacePaths,
    /// Files bind-mounted read-only into the container: (host path, container path).
    pub files: &'a [(PathBuf, &'static str)],
}

fn bad_config(input: &SpecInput<'_>, reason: String) -> CellError {
    CellError::BadImageConfig {
        container: input.container.to_string(),
        image: input.image.to_string(),
        reason,
    }
}

/// The process's argv: the image's entrypoint followed by its command.
pub(crate) fn args(config: &RunConfig) -> Vec<String> {
    config
        .entrypoint
        .iter()
        .chain(config.cmd.iter())
        .cloned()
        .collect()
}

/// `KEY=value` split at its first `=`, when the key is not empty and
/// neither side holds a NUL (which execve could not pass on).
pub(crate) fn env_entry(entry: &str) -> Option<(&str, &str)> {
    entry
        .split_once('=')
        .filter(|(key, value)| !key.is_empty() && !key.contains('\0') && !value.contains('\0'))
}

/// The image's environment (a repeated key keeps its first position and its
/// last value), plus PATH, HOSTNAME and HOME when the image does not set them.
pub(crate) fn env(
    config: &RunConfig,
    cell: &str,
    user: &ResolvedUser,
) -> Result<Vec<String>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    for entry in &config.env {
        let Some((key, value)) = env_entry(entry) else {
            return Err(format!("environment entry {entry:?} is not KEY=value"));
        };
        if values.insert(key.to_string(), value.to_string()).is_none() {
            order.push(key.to_string());
        }
    }
    let defaults = [
        ("PATH", DEFAULT_PATH.to_string()),
        ("HOSTNAME", cell.to_string()),
        ("HOME", user.home.clone().unwrap_or_else(|| "/".to_string())),
    ];
    for (key, value) in defaults {
        if !values.contains_key(key) {
            values.insert(key.to_string(), value);
            order.push(key.to_string());
        }
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = &values[&k];
            format!("{k}={v}")
        })
        .collect())
}

/// The working directory: the image's, `/` when unset, made absolute.
pub(crate) fn working_dir(config: &RunConfig) -> Result<String, String> {
    let dir = config.working_dir.trim();
    if dir.contains('\0') {
        return Err("working directory contains NUL".to_string());
    }
    Ok(match dir {
        "" => "/".to_string(),
        d if d.starts_with('/') => d.to_string(),
        d => format!("/{d}"),
    })
}

/// The namespaces: new mount, PID and cgroup namespaces of its own; the
/// cell's network, IPC and UTS namespaces joined by path.
pub(crate) fn namespaces(
    paths: &NamespacePaths,
) -> Result<Vec<LinuxNamespace>, oci_spec::OciSpecError> {
    let own = |typ| LinuxNamespaceBuilder::default().typ(typ).build();
    let joined = |typ, path: &Path| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .path(path.to_path_buf())
            .build()
    };
    Ok(vec![
        own(LinuxNamespaceType::Mount)?,
        own(LinuxNamespaceType::Pid)?,
        own(LinuxNamespaceType::Cgroup)?,
        joined(LinuxNamespaceType::Network, &paths.net)?,
        joined(LinuxNamespaceType::Ipc, &paths.ipc)?,
        joined(LinuxNamespaceType::Uts, &paths.uts)?,
    ])
}

/// The whole spec, starting from oci-spec's runc-like defaults (mounts,
/// masked and read-only paths, capabilities, rlimits, no_new_privileges).
pub(crate) fn build(input: &SpecInput<'_>) -> Result<Spec, CellError> {
    let oci =
        |e: oci_spec::OciSpecError| bad_config(input, format!("building the runtime spec: {e}"));
    let argv = args(input.config);
    if argv.is_empty() {
        return Err(CellError::NothingToRun {
            container: input.container.to_string(),
            image: input.image.to_string(),
        });
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(bad_config(
            input,
            "entrypoint or command contains NUL".to_string(),
        ));
    }
    let env = env(input.config, input.cell, input.user).map_err(|r| bad_config(input, r))?;
    let cwd = working_dir(input.config).map_err(|r| bad_config(input, r))?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(input.cell.to_string()));
    spec.set_root(Some(
        RootBuilder::default()
            .path(input.rootfs.to_path_buf())
            .readonly(false)
            .build()
            .map_err(oci)?,
    ));

    let mut process = spec.process().clone().unwrap_or_default();
    process.set_terminal(Some(false));
    process.set_args(Some(argv));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    let mut user = UserBuilder::default()
        .uid(input.user.uid)
        .gid(input.user.gid);
    if !input.user.additional_gids.is_empty() {
        user = user.additional_gids(input.user.additional_gids.clone());
    }
    process.set_user(user.build().map_err(oci)?);
    spec.set_process(Some(process));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (source, destination) in input.files {
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from(destination))
                .typ("bind")
                .source(source.clone())
                .options(vec![
                    "rbind".to_string(),
                    "ro".to_string(),
                    "nosuid".to_string(),
                    "nodev".to_string(),
                ])
                .build()
                .map_err(oci)?,
        );
    }
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(input.cgroups_path)));
    linux.set_namespaces(Some(namespaces(input.namespaces).map_err(oci)?));
    let mut resources = linux.resources().clone().unwrap_or_default();
    // Deny every device, as runc's default spec does; libcontainer then
    // allows the standard ones (null, zero, full, tty, random, urandom, ptmx).
    resources.set_devices(Some(vec![LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .map_err(oci)?]));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));

    let annotations = HashMap::from([
        ("org.aurae.cell".to_string(), input.cell.to_string()),
        (
            "org.aurae.container".to_string(),
            input.container.to_string(),
        ),
        ("org.aurae.image".to_string(), input.image.to_string()),
    ]);
    spec.set_annotations(Some(annotations));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> ResolvedUser {
        ResolvedUser {
            uid: 33,
            gid: 34,
            additional_gids: vec![500],
            home: Some("/var/www".into()),
        }
    }

    fn paths() -> NamespacePaths {
        NamespacePaths {
            net: "/run/aurae/cells/web/ns/net".into(),
            ipc: "/run/aurae/cells/web/ns/ipc".into(),
            uts: "/run/aurae/cells/web/ns/uts".into(),
        }
    }

    fn config() -> RunConfig {
        RunConfig {
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo hi".into()],
            env: vec!["PATH=/bin".into(), "A=1".into(), "B=2".into(), "A=3".into()],
            working_dir: "srv".into(),
            user: "www".into(),
        }
    }

    fn build_with(config: &RunConfig) -> Result<Spec, CellError> {
        let user = user();
        let ns = paths();
        let files = [(
            PathBuf::from("/run/aurae/cells/web/etc/hosts"),
            "/etc/hosts",
        )];
        build(&SpecInput {
            cell: "web",
            container: "server",
            image: "busybox",
            config,
            user: &user,
            rootfs: Path::new("/run/aurae/cells/web/containers/server/rootfs"),
            cgroups_path: "/aurae/cells/web/server",
            namespaces: &ns,
            files: &files,
        })
    }

    #[test]
    fn args_are_entrypoint_then_cmd() {
        assert_eq!(args(&config()), ["/bin/sh", "-c", "echo hi"]);
        let only_cmd = RunConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        assert_eq!(args(&only_cmd), ["sh"]);
        let only_entry = RunConfig {
            entrypoint: vec!["/app".into()],
            ..Default::default()
        };
        assert_eq!(args(&only_entry), ["/app"]);
    }

    #[test]
    fn env_merges_image_values_with_defaults() {
        let env = env(&config(), "web", &user()).expect("env");
        assert_eq!(
            env,
            ["PATH=/bin", "A=3", "B=2", "HOSTNAME=web", "HOME=/var/www"]
        );
        let bare = super::env(
            &RunConfig::default(),
            "c",
            &ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: None,
            },
        )
        .expect("env");
        assert_eq!(
            bare,
            [
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=c".into(),
                "HOME=/".into()
            ]
        );
        let bad = RunConfig {
            env: vec!["NOEQUALS".into()],
            ..Default::default()
        };
        assert!(super::env(&bad, "c", &user()).is_err());
        let bad = RunConfig {
            env: vec!["=v".into()],
            ..Default::default()
        };
        assert!(super::env(&bad, "c", &user()).is_err());
    }

    #[test]
    fn working_dir_defaults_to_root_and_is_absolute() {
        let wd = |d: &str| {
            working_dir(&RunConfig {
                working_dir: d.into(),
                ..Default::default()
            })
            .expect(d)
        };
        assert_eq!(wd(""), "/");
        assert_eq!(wd("/srv"), "/srv");
        assert_eq!(wd("srv"), "/srv");
    }

    #[test]
    fn spec_carries_process_user_and_root() {
        let spec = build_with(&config()).expect("spec");
        let process = spec.process().as_ref().expect("process");
        assert_eq!(
            process.args().as_deref(),
            Some(&["/bin/sh".to_string(), "-c".into(), "echo hi".into()][..])
        );
        assert_eq!(process.cwd(), Path::new("/srv"));
        assert_eq!(process.user().uid(), 33);
        assert_eq!(process.user().gid(), 34);
        assert_eq!(
            process.user().additional_gids().as_deref(),
            Some(&[500u32][..])
        );
        assert_eq!(process.terminal(), Some(false));
        assert!(process
            .env()
            .as_ref()
            .expect("env")
            .contains(&"HOSTNAME=web".to_string()));
        let root = spec.root().as_ref().expect("root");
        assert_eq!(
            root.path(),
            Path::new("/run/aurae/cells/web/containers/server/rootfs")
        );
        assert_eq!(root.readonly(), Some(false));
        assert_eq!(spec.hostname().as_deref(), Some("web"));
    }

    #[test]
    fn spec_sets_the_cgroup_and_joins_the_cell_namespaces() {
        let spec = build_with(&config()).expect("spec");
        let linux = spec.linux().as_ref().expect("linux");
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/aurae/cells/web/server"))
        );
        let ns: Vec<(LinuxNamespaceType, Option<PathBuf>)> = linux
            .namespaces()
            .as_ref()
            .expect("namespaces")
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect();
        assert_eq!(
            ns,
            [
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Cgroup, None),
                (
                    LinuxNamespaceType::Network,
                    Some("/run/aurae/cells/web/ns/net".into())
                ),
                (
                    LinuxNamespaceType::Ipc,
                    Some("/run/aurae/cells/web/ns/ipc".into())
                ),
                (
                    LinuxNamespaceType::Uts,
                    Some("/run/aurae/cells/web/ns/uts".into())
                ),
            ]
        );
        let devices = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .expect("devices");
        assert_eq!(devices.len(), 1);
        assert!(!devices[0].allow());
        assert_eq!(devices[0].access().as_deref(), Some("rwm"));
    }

    #[test]
    fn spec_binds_the_cell_files_read_only() {
        let spec = build_with(&config()).expect("spec");
        let mounts = spec.mounts().as_ref().expect("mounts");
        let hosts = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/etc/hosts"))
            .expect("hosts mount");
        assert_eq!(hosts.typ().as_deref(), Some("bind"));
        assert_eq!(
            hosts.source().as_deref(),
            Some(Path::new("/run/aurae/cells/web/etc/hosts"))
        );
        assert!(hosts
            .options()
            .as_ref()
            .expect("options")
            .contains(&"ro".to_string()));
        assert!(mounts.iter().any(|m| m.destination() == Path::new("/proc")));
    }

    #[test]
    fn spec_refuses_images_with_nothing_to_run_or_bad_env() {
        let err = build_with(&RunConfig::default()).expect_err("nothing to run");
        assert!(matches!(err, CellError::NothingToRun { .. }), "{err}");
        let err = build_with(&RunConfig {
            cmd: vec!["sh".into()],
            env: vec!["oops".into()],
            ..Default::default()
        })
        .expect_err("bad env");
        assert!(matches!(err, CellError::BadImageConfig { .. }), "{err}");
    }

    #[test]
    fn spec_round_trips_through_config_json() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let spec = build_with(&config()).expect("spec");
        let path = dir.path().join("config.json");
        spec.save(&path).expect("save");
        assert_eq!(Spec::load(&path).expect("load"), spec);
    }
}
