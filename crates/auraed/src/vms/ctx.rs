//! What the core and the supervisors share: resolving an image to a
//! checked base disk, and booting a VM's hypervisor on its overlay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::accel::Accel;
use super::error::VmError;
use super::fetch::DiskCache;
use super::net::{self, Network};
use super::progress::{Phase, Progress};
use super::qmp::Qmp;
use super::store::{VmRecord, Want, MACHINES};
use super::{disk, qemu};
use crate::cgroups::{CgroupPath, Limits};
use crate::images::ImageStore;
use crate::logs::Kind;
use crate::process::{DetachedRecord, ProcessHandle, ProcessSpec, Processes};
use crate::state::StateDb;

/// How long a hypervisor may take to report `running` over QMP.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest path a Unix socket address holds.
const MAX_SOCKET_PATH: usize = 107;

/// What the supervisors share with the core.
pub struct Ctx {
    pub(super) processes: Processes,
    pub(super) db: Arc<StateDb>,
    pub(super) cache: DiskCache,
    pub(super) images: Arc<ImageStore>,
    pub(super) machines_dir: PathBuf,
    pub(super) runtime_dir: PathBuf,
    pub(super) cgroup_parent: CgroupPath,
    pub(super) accel: Accel,
    pub(super) stop_timeout: Duration,
    /// This daemon's TAP names start with it (see `net::tap_prefix`).
    pub(super) tap_prefix: String,
}

impl Ctx {
    pub(super) fn qmp_path(&self, name: &str) -> PathBuf {
        self.runtime_dir.join(name).join("qmp.sock")
    }

    pub(super) fn overlay_path(&self, name: &str) -> PathBuf {
        self.machines_dir.join(name).join("overlay.qcow2")
    }

    /// Removes the VM's TAP, if it has one: called whenever it goes off.
    pub(super) async fn release_net(&self, record: &VmRecord) {
        if !record.tap.is_empty() {
            net::remove_tap(&record.tap).await;
        }
    }

    /// Writes `record` durably; a failure is logged (the VM goes on).
    pub(super) async fn persist(&self, name: &str, record: &VmRecord) {
        let (db, key, r) = (self.db.clone(), name.to_string(), record.clone());
        if !matches!(
            tokio::task::spawn_blocking(move || db.put(&MACHINES, &key, &r)).await,
            Ok(Ok(()))
        ) {
            tracing::warn!(
                kind = "vm",
                name,
                "could not record the vm in the state database"
            );
        }
    }

    /// Starts the hypervisor of `name` on its overlay, records the run and
    /// returns once QMP reports the guest running. On failure nothing of
    /// this boot is left (process, cgroup, socket, log).
    pub(super) async fn boot(
        &self,
        name: &str,
        record: &VmRecord,
    ) -> Result<(ProcessHandle, DetachedRecord), VmError> {
        let qmp = self.qmp_path(name);
        if qmp.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(VmError::Boot {
                name: name.to_string(),
                detail: format!(
                    "the QMP socket path {} is too long for a Unix socket: use a shorter --runtime-dir",
                    qmp.display()
                ),
            });
        }
        let run_dir = self.runtime_dir.join(name);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| VmError::io(format!("creating {}", run_dir.display()), e))?;
        let _ = std::fs::remove_file(&qmp);
        let overlay = self.overlay_path(name);
        let network = Network::parse(&record.network)?;
        let tap = match &network {
            Network::User => None,
            Network::None => Some(""),
            Network::Bridge(bridge) => {
                net::create_tap(&record.tap, bridge).await?;
                Some(record.tap.as_str())
            }
        };
        let argv = qemu::argv(&qemu::QemuArgs {
            name,
            accel: self.accel,
            memory_mib: record.memory_mib,
            vcpus: record.vcpus,
            overlay: &overlay,
            qmp: &qmp,
            tap,
        });
        let spawned = self.spawn(name, &argv).await;
        let (handle, run) = match spawned {
            Ok(s) => s,
            Err(e) => {
                self.release_net(record).await;
                return Err(e);
            }
        };
        let mut recorded = record.clone();
        recorded.want = Want::Running;
        recorded.message.clear();
        recorded.run = Some(run.clone());
        self.persist(name, &recorded).await;
        match wait_running(&qmp, &handle).await {
            Ok(()) => {
                tracing::info!(kind = "vm", name, pid = handle.pid(), accel = %self.accel, command = ?argv, "vm running");
                Ok((handle, run))
            }
            Err(why) => {
                handle.stop();
                let detail = match handle.wait().await {
                    Ok(f) => {
                        let out = f.output(4096).await;
                        let _ = std::fs::remove_dir_all(&f.log_dir);
                        format!(
                            "{why}; hypervisor {}: {}",
                            f.exit.describe(),
                            out.stderr.trim()
                        )
                    }
                    Err(e) => format!("{why}; {e}"),
                };
                let _ = std::fs::remove_file(&qmp);
                self.release_net(record).await;
                // The record as it was before this boot (e.g. still stopped).
                self.persist(name, record).await;
                Err(VmError::Boot {
                    name: name.to_string(),
                    detail,
                })
            }
        }
    }

    /// QEMU, detached, in the VM's cgroup.
    async fn spawn(
        &self,
        name: &str,
        argv: &[String],
    ) -> Result<(ProcessHandle, DetachedRecord), VmError> {
        spawn_hypervisor(&self.processes, &self.cgroup_parent, name, argv).await
    }

    /// Resolves `image` (always at its source) to a cached, checked base
    /// disk: its digest, path and format, and for a containerDisk the image
    /// store's layers it lives in (to be leased while a VM uses it).
    /// `progress` follows the download.
    pub(super) async fn resolve(
        &self,
        image: &str,
        progress: &Progress,
    ) -> Result<Resolved, VmError> {
        let (digest, path, layers) = if image.starts_with("http://")
            || image.starts_with("https://")
        {
            let f = self.cache.fetch(image, progress).await?;
            progress.phase(Phase::Checking);
            tracing::info!(kind = "vm", image, digest = %f.digest, downloaded = f.downloaded, "disk image resolved");
            match disk::inspect(image, &f.path).await {
                Ok(format) => {
                    return Ok(Resolved {
                        digest: f.digest,
                        base: f.path,
                        format,
                        layers: None,
                    })
                }
                Err(e) => {
                    // No VM can ever use it: do not keep it.
                    self.cache.forget(&f.digest);
                    return Err(e);
                }
            }
        } else if image.contains("://") {
            return Err(VmError::BadImage {
                image: image.to_string(),
                detail: "only http:// and https:// URLs are fetched".into(),
            });
        } else {
            let pulled = self.images.pull(image, Some(progress)).await?;
            progress.phase(Phase::Checking);
            let path = container_disk(&pulled.layers).ok_or_else(|| VmError::NotADisk {
                image: image.to_string(),
                detail:
                    "a containerDisk holds exactly one disk file under /disk/; this image has none"
                        .into(),
            })?;
            (pulled.manifest_digest, path, Some(pulled.layers))
        };
        let format = disk::inspect(image, &path).await?;
        Ok(Resolved {
            digest,
            base: path,
            format,
            layers,
        })
    }

    /// Keeps a containerDisk's layers from image pruning while `overlay`
    /// (the VM's disk over it) exists.
    pub(super) async fn lease(
        &self,
        image: &str,
        layers: Vec<PathBuf>,
        overlay: &Path,
    ) -> Result<(), VmError> {
        let images = self.images.clone();
        let (image, overlay) = (image.to_string(), overlay.to_path_buf());
        tokio::task::spawn_blocking(move || images.lease_while(&image, &layers, &overlay))
            .await
            .map_err(|e| VmError::io("leasing the disk's layers", std::io::Error::other(e)))?
            .map_err(VmError::from)
    }
}

/// A base disk ready for overlays.
pub(super) struct Resolved {
    pub digest: String,
    pub base: PathBuf,
    pub format: String,
    /// The image store's layers, for a containerDisk.
    pub layers: Option<Vec<PathBuf>>,
}

/// Starts a hypervisor (`argv`) detached, through the process layer's
/// monitor, in `<cgroup_parent>/<name>`, its console in the log store;
/// for VMs and nested instances alike.
pub(crate) async fn spawn_hypervisor(
    processes: &Processes,
    cgroup_parent: &CgroupPath,
    name: &str,
    argv: &[String],
) -> Result<(ProcessHandle, DetachedRecord), VmError> {
    let spec = ProcessSpec {
        argv: argv.iter().map(Into::into).collect(),
        cgroup: cgroup_parent.workload(name).map_err(|e| VmError::Boot {
            name: name.to_string(),
            detail: e.to_string(),
        })?,
        kind: Kind::Vm,
        name: name.to_string(),
        limits: Limits::default(),
        // QEMU opens /dev/kvm and the VM's files in the daemon's state
        // directory: it runs as the daemon, whatever --default-user says.
        user: "root".to_string(),
        group: String::new(),
    };
    processes
        .spawn_detached(spec)
        .await
        .map_err(|source| VmError::Process {
            name: name.to_string(),
            source,
        })
}

/// Waits until QMP says `running`; an error when the hypervisor exits first.
pub(crate) async fn wait_running(qmp: &Path, handle: &ProcessHandle) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + BOOT_TIMEOUT;
    let mut last = String::from("no QMP socket yet");
    while tokio::time::Instant::now() < deadline {
        if handle.is_finished() {
            return Err("the hypervisor exited during start".into());
        }
        if qmp.exists() {
            match Qmp::connect(qmp).await {
                Ok(mut q) => match q.status().await {
                    Ok(s) if s == "running" => return Ok(()),
                    Ok(s) => last = format!("QMP status {s}"),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "QMP did not report running within {}s ({last})",
        BOOT_TIMEOUT.as_secs()
    ))
}

/// The one regular file under `/disk/` of the topmost layer that has one.
pub(super) fn container_disk(layers: &[PathBuf]) -> Option<PathBuf> {
    layers.iter().rev().find_map(|layer| {
        let dir = layer.join("disk");
        let meta = std::fs::symlink_metadata(&dir).ok()?;
        if !meta.is_dir() {
            return None;
        }
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".wh."))
            .map(|e| e.path())
            .collect();
        match files.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_disk_is_the_one_file_under_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (low, high) = (dir.path().join("l0"), dir.path().join("l1"));
        std::fs::create_dir_all(low.join("disk")).expect("mkdir");
        std::fs::write(low.join("disk/a.qcow2"), b"x").expect("write");
        std::fs::create_dir_all(high.join("etc")).expect("mkdir");
        assert_eq!(
            container_disk(&[low.clone(), high.clone()]),
            Some(low.join("disk/a.qcow2"))
        );
        std::fs::write(low.join("disk/b.qcow2"), b"x").expect("write");
        assert_eq!(
            container_disk(&[low, high]),
            None,
            "two disks are ambiguous"
        );
    }
}
