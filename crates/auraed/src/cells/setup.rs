//! Sandbox create, its blocking part: the cell's directory, its sandbox
//! namespaces joined to its CNI network, its cgroups, and for each
//! container its root filesystem, its user and its OCI bundle. The
//! operations on the cell's record that call it are in `ops`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cgroup::CellCgroups;
use super::core::Inner;
use super::error::CellError;
use super::image::PulledImage;
use super::network::{self, NetworkRequest};
use super::request::CellRequest;
use super::{mounts, sandbox, spec, user};
use crate::cgroups::Limits;

/// How long to wait, beyond the grace period, for a killed container's
/// supervisor to reap it and drain its output.
pub(super) const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time a container's create or start may take, whatever the
/// grace period: a start is no stop, and a loaded node is slow.
pub(super) const MIN_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// `meta.message` of a container the OOM killer hit.
pub(super) const OOM_KILLED: &str = "OOM killed";

/// Refuses, before anything is created, images that have nothing to run.
pub(crate) fn check_runnable(req: &CellRequest, pulled: &[PulledImage]) -> Result<(), CellError> {
    for (c, image) in req.containers.iter().zip(pulled) {
        if spec::args(&image.config).is_empty() {
            return Err(CellError::NothingToRun {
                container: c.name.clone(),
                image: c.image.clone(),
            });
        }
    }
    Ok(())
}

/// One container's bundle, from its pulled image.
pub(super) struct ContainerRun {
    pub name: String,
    /// Its own limits (the cell's bound it from above).
    limits: Limits,
    image: PulledImage,
    /// The bundle: config.json and the root filesystem.
    pub dir: PathBuf,
}

impl ContainerRun {
    /// Container `name` of the cell in `cell_dir`, from its pulled image.
    pub fn new(cell_dir: &Path, name: &str, limits: Limits, image: PulledImage) -> Self {
        ContainerRun {
            name: name.to_string(),
            limits,
            image,
            dir: cell_dir.join("containers").join(name),
        }
    }
}

/// The blocking part of setting a cell up: the sandbox (directory,
/// namespaces, network) and every container's bundle and cgroup.
pub(super) fn set_up_blocking(
    inner: &Inner,
    name: &str,
    dir: &Path,
    containers: &[ContainerRun],
    net: &NetworkRequest,
    limits: &Limits,
    connected: &dyn Fn(Option<std::net::IpAddr>),
) -> Result<(), CellError> {
    // A previous run of this name that could not be torn down: finish the job.
    if dir.exists() || inner.cgroups.cells().iter().any(|c| c == name) {
        tracing::info!(
            cell = name,
            "removing what an earlier run of this cell left"
        );
        inner.reclaim(name)?;
    }
    let mkdir = |path: &Path| {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| CellError::io("creating", path, e))
    };
    mkdir(dir)?;
    mounts::make_private(dir).map_err(|e| CellError::io("preparing", dir, e))?;

    let etc = dir.join("etc");
    mkdir(&etc)?;
    let hosts = etc.join("hosts");
    write_file(
        &hosts,
        &format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{name}\n"
        ),
    )?;
    let hostname = etc.join("hostname");
    write_file(&hostname, &format!("{name}\n"))?;
    let mut files = vec![(hosts, "/etc/hosts"), (hostname, "/etc/hostname")];

    let namespaces = sandbox::create(&dir.join("ns"), name).map_err(|e| {
        CellError::io(
            "creating the network, IPC and UTS namespaces in",
            dir.join("ns"),
            e,
        )
    })?;
    if let Some(attached) = network::connect(inner, name, &namespaces.net, net)? {
        connected(attached.ip);
        let resolv = etc.join("resolv.conf");
        write_file(&resolv, &network::resolv_conf(&attached.result.dns))?;
        files.push((resolv, "/etc/resolv.conf"));
    }
    let own: Vec<(String, Limits)> = containers
        .iter()
        .map(|c| (c.name.clone(), c.limits))
        .collect();
    inner.cgroups.create(name, limits, &own)?;
    mkdir(&dir.join("state"))?;

    for c in containers {
        mkdir(&c.dir)?;
        let rootfs = inner
            .images
            .mount_rootfs(&c.image, &c.dir)
            .map_err(|error| CellError::Image {
                container: c.name.clone(),
                image: c.image.reference.clone(),
                error: Box::new(error),
            })?;
        let rootfs_path = rootfs.path().to_path_buf();
        // Mounted as long as the cell: its removal unmounts everything
        // under its directory.
        rootfs.leave_mounted();
        let user =
            user::resolve_in_rootfs(&c.image.config.user, &rootfs_path).map_err(|reason| {
                CellError::User {
                    container: c.name.clone(),
                    image: c.image.reference.clone(),
                    user: c.image.config.user.clone(),
                    reason,
                }
            })?;
        let cgroup = inner.cgroups.container(name, &c.name)?;
        let oci = spec::build(&spec::SpecInput {
            cell: name,
            container: &c.name,
            image: &c.image.reference,
            config: &c.image.config,
            user: &user,
            rootfs: &rootfs_path,
            cgroups_path: &CellCgroups::spec_path(&cgroup),
            namespaces: &namespaces,
            files: &files,
        })?;
        let config = c.dir.join("config.json");
        oci.save(&config)
            .map_err(|e| CellError::io("writing", &config, std::io::Error::other(e.to_string())))?;
    }
    Ok(())
}

fn write_file(path: &Path, content: &str) -> Result<(), CellError> {
    let mut f = fs::File::create(path).map_err(|e| CellError::io("creating", path, e))?;
    f.write_all(content.as_bytes())
        .map_err(|e| CellError::io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::image::RunConfig;
    use crate::cells::request::ContainerRequest;

    fn image(cmd: &[&str]) -> PulledImage {
        PulledImage {
            reference: "busybox".into(),
            digest: "sha256:00".into(),
            config: RunConfig {
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            layers: vec![],
        }
    }

    #[test]
    fn images_without_a_command_are_refused_before_set_up() {
        let req = CellRequest {
            name: "c".into(),
            containers: vec![
                ContainerRequest {
                    name: "a".into(),
                    image: "busybox".into(),
                    limits: Limits::default(),
                    process: Default::default(),
                },
                ContainerRequest {
                    name: "b".into(),
                    image: "scratch-ish".into(),
                    limits: Limits::default(),
                    process: Default::default(),
                },
            ],
            network: crate::cells::network::validate("c", "none", &[]).expect("none"),
            limits: Limits::default(),
        };
        check_runnable(&req, &[image(&["sh"]), image(&["true"])]).expect("runnable");
        let err = check_runnable(&req, &[image(&["sh"]), image(&[])]).expect_err("b has nothing");
        assert!(
            matches!(&err, CellError::NothingToRun { container, .. } if container == "b"),
            "{err}"
        );
    }
}
