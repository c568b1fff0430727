//! Nested instances: ephemeral micro-VMs whose PID 1 is auraed, spawned by
//! `runtime.Core/Spawn` (and RunPod), listed by `instances.Instances/Graph`
//! and freed by `instances.Instances/Free`.
//!
//! - `pool`: the addresses (`--instance-subnet`), the bridge's first.
//! - `hostnet`: the bridge and one TAP per instance, behind a trait.
//! - `certs`: what the parent issues each instance from its CA.
//! - `argv`: the QEMU command line.
//! - `store`: the records, written before anything exists on the host.
//! - `remote`: the mTLS client of a nested auraed (health, graph).
//! - `cpio`: the per-instance initramfs (the image's, with the PKI appended).
//!
//! The guest side (auraed as PID 1) is `crate::init`.
//!
//! An instance lives no longer than the daemon that spawned it: freed at
//! its shutdown, and whatever a killed daemon left (records, hypervisors,
//! TAPs, files) is removed at the next start. The hypervisor runs through
//! the VM driver's launcher (`crate::vms::ctx::spawn_hypervisor`), its
//! console in the log store. Operator documentation: docs/instances.md.

mod argv;
mod certs;
pub mod cpio;
mod error;
mod hostnet;
mod pool;
mod remote;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use argv::INSTANCE_PORT;
pub use error::InstanceError;
pub use hostnet::{HostNet, IpHostNet};
pub use pool::Subnet;
pub use remote::GraphNode;

use crate::cgroups::CgroupPath;
use crate::images::ImageStore;
use crate::process::{ProcessHandle, Processes};
use crate::state::StateDb;
use crate::validation::validate_name;
use crate::vms::accel::Accel;
use crate::vms::qmp::Qmp;
use store::{InstanceRecord, INSTANCES};

pub const DEFAULT_MEMORY_MIB: u32 = 512;
pub const DEFAULT_VCPUS: u32 = 1;
/// The image files `hack/build-instance-image.sh DIR` writes.
pub const KERNEL_FILE: &str = "vmlinux";
pub const INITRAMFS_FILE: &str = "initramfs.cpio";
/// How much of a failed boot's console its error shows.
const CONSOLE_TAIL: usize = 2048;
/// How long Free waits for the hypervisor to go after QMP `quit`.
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// Where things go and the daemon's choices.
pub struct InstancesConfig {
    /// This daemon's name (the root of the graph).
    pub name: String,
    /// `<state_dir>/instances`: one directory per instance.
    pub state_dir: PathBuf,
    /// `<runtime_dir>/instances`: QMP sockets.
    pub runtime_dir: PathBuf,
    /// `<cgroup root>/instances`.
    pub cgroup_parent: CgroupPath,
    /// `--instance-image-dir`.
    pub image_dir: PathBuf,
    pub ca_crt: PathBuf,
    /// `--ca-key`, read at each Spawn.
    pub ca_key: PathBuf,
    pub subnet: Subnet,
    pub bridge: String,
    pub accel: Accel,
    /// How long a booting instance may take to answer its health check.
    pub boot_timeout: Duration,
}

/// An instance to spawn.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    /// Empty: generated.
    pub name: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    /// Images the parent pulls and hands to the instance (RunPod): an OCI
    /// layout in the instance's directory, shared read-only over 9p.
    pub preload_images: Vec<String>,
    pub caller: String,
}

/// A spawned instance as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    pub name: String,
    /// `IP:PORT` of its auraed.
    pub address: String,
    pub pid: i32,
}

struct Live {
    record: InstanceRecord,
    handle: Option<ProcessHandle>,
}

/// The nested instances of this daemon.
pub struct Instances {
    config: InstancesConfig,
    processes: Processes,
    db: Arc<StateDb>,
    net: Arc<dyn HostNet>,
    images: Arc<ImageStore>,
    tap_prefix: String,
    live: Mutex<BTreeMap<String, Live>>,
    /// Names and addresses held by Spawns in progress.
    creating: Mutex<BTreeMap<String, Ipv4Addr>>,
    shutting_down: AtomicBool,
}

impl Instances {
    pub fn new(
        config: InstancesConfig,
        processes: Processes,
        db: Arc<StateDb>,
        net: Arc<dyn HostNet>,
        images: Arc<ImageStore>,
    ) -> Arc<Self> {
        let tap_prefix = hostnet::tap_prefix(&config.state_dir);
        Arc::new(Self {
            config,
            processes,
            db,
            net,
            images,
            tap_prefix,
            live: Mutex::default(),
            creating: Mutex::default(),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// Removes everything an earlier daemon left of its instances: they
    /// were ephemeral, bound to it. Runs before serving.
    pub async fn clean_leftovers(&self) {
        let records = {
            let db = self.db.clone();
            tokio::task::spawn_blocking(move || db.all(&INSTANCES))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        };
        self.processes
            .clean_leftovers(&self.config.cgroup_parent, Vec::new(), "instance")
            .await;
        for tap in self.net.taps_with_prefix(&self.tap_prefix) {
            tracing::info!(kind = "instance", tap = %tap, "removing a tap device left by an earlier daemon");
            self.net.remove_tap(&tap).await;
        }
        for name in records.keys() {
            tracing::info!(kind = "instance", name = %name, "removing an instance left by an earlier daemon");
            self.forget(name).await;
        }
        for dir in [&self.config.state_dir, &self.config.runtime_dir] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Spawns an instance; returns once its auraed answers over mTLS. On
    /// any failure nothing of it is left.
    pub async fn spawn(self: &Arc<Self>, spec: SpawnSpec) -> Result<Spawned, InstanceError> {
        let this = self.clone();
        tokio::spawn(async move { this.spawn_now(spec).await })
            .await
            .map_err(|e| InstanceError::io("instance task", std::io::Error::other(e)))?
    }

    async fn spawn_now(&self, spec: SpawnSpec) -> Result<Spawned, InstanceError> {
        let name = if spec.name.is_empty() {
            generated_name()
        } else {
            spec.name.clone()
        };
        validate_instance_name(&name)?;
        let memory_mib = crate::vms::size(
            "memory_mib",
            spec.memory_mib,
            DEFAULT_MEMORY_MIB,
            64,
            1024 * 1024,
            "64 to 1048576 MiB (0: 512)",
        )?;
        let vcpus = crate::vms::size(
            "vcpus",
            spec.vcpus,
            DEFAULT_VCPUS,
            1,
            255,
            "1 to 255 (0: 1)",
        )?;
        let (kernel, base) = self.image()?;
        let ca = certs::CaFiles::read(&self.config.ca_crt, &self.config.ca_key)?;
        let address = self.reserve(&name)?;
        let record = InstanceRecord {
            address,
            tap: hostnet::tap_name(&self.tap_prefix, &name),
            memory_mib,
            vcpus,
            run: None,
        };
        let booted = self
            .boot(&name, record, &kernel, &base, &ca, &spec.preload_images)
            .await;
        self.creating().remove(&name);
        match booted {
            Ok(s) => {
                tracing::info!(kind = "instance", name = %name, address = %s.address, pid = s.pid, caller = %spec.caller, "instance spawned");
                Ok(s)
            }
            Err(e) => {
                tracing::warn!(kind = "instance", name = %name, caller = %spec.caller, error = %e, "instance could not be spawned");
                Err(e)
            }
        }
    }

    /// Everything of a Spawn after the name and address are held; undone
    /// on failure.
    async fn boot(
        &self,
        name: &str,
        mut record: InstanceRecord,
        kernel: &Path,
        base: &Path,
        ca: &certs::CaFiles,
        preload: &[String],
    ) -> Result<Spawned, InstanceError> {
        self.persist(name, &record).await?;
        let mut handle = None;
        let r = self
            .boot_steps(name, &mut record, &mut handle, kernel, base, ca, preload)
            .await;
        match r {
            Ok(()) => {
                let pid = handle.as_ref().map_or(0, ProcessHandle::pid);
                let address = format!("{}:{INSTANCE_PORT}", record.address);
                self.live()
                    .insert(name.to_string(), Live { record, handle });
                Ok(Spawned {
                    name: name.to_string(),
                    address,
                    pid,
                })
            }
            Err(e) => {
                let console = self.teardown(name, &record, handle).await;
                Err(match e {
                    InstanceError::Exited { name, detail } => InstanceError::Exited {
                        name,
                        detail: format!("{detail}; its console ended with:\n{console}"),
                    },
                    e => e,
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn boot_steps(
        &self,
        name: &str,
        record: &mut InstanceRecord,
        handle: &mut Option<ProcessHandle>,
        kernel: &Path,
        base: &Path,
        ca: &certs::CaFiles,
        preload: &[String],
    ) -> Result<(), InstanceError> {
        let dir = self.dir(name);
        let files = certs::provision(ca, name, record.address, &dir, base).await?;
        let preload = self.stage_images(&dir, preload).await?;
        let subnet = self.config.subnet;
        let net_err = |detail| InstanceError::Network {
            name: name.to_string(),
            detail,
        };
        self.net
            .ensure_bridge(&self.config.bridge, subnet.gateway(), subnet.prefix())
            .await
            .map_err(net_err)?;
        self.net
            .create_tap(&record.tap, &self.config.bridge)
            .await
            .map_err(net_err)?;
        let qmp = self.qmp_path(name);
        let run_dir = self.config.runtime_dir.join(name);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| InstanceError::io(format!("creating {}", run_dir.display()), e))?;
        let mac = pool::mac_for(record.address);
        let argv = argv::argv(&argv::BootArgs {
            name,
            accel: self.config.accel,
            memory_mib: record.memory_mib,
            vcpus: record.vcpus,
            kernel,
            initrd: &files.initramfs,
            address: record.address,
            gateway: subnet.gateway(),
            netmask: subnet.netmask(),
            tap: &record.tap,
            mac: &mac,
            qmp: &qmp,
            preload: preload.as_deref(),
        });
        let (h, run) = crate::vms::ctx::spawn_hypervisor(
            &self.processes,
            &self.config.cgroup_parent,
            name,
            &argv,
        )
        .await?;
        tracing::info!(kind = "instance", name, pid = h.pid(), command = ?argv, "instance booting");
        record.run = Some(run);
        let h = handle.insert(h);
        self.persist(name, record).await?;
        let target = remote::Target::new(name, record.address, &self.config.ca_crt, &files);
        remote::wait_answering(&target, h, self.config.boot_timeout).await
    }

    /// Stops the hypervisor and removes the TAP, the files and the record;
    /// returns the end of its console.
    async fn teardown(
        &self,
        name: &str,
        record: &InstanceRecord,
        handle: Option<ProcessHandle>,
    ) -> String {
        let mut console = String::new();
        if let Some(h) = handle {
            if !h.is_finished() {
                if let Ok(mut q) = Qmp::connect(&self.qmp_path(name)).await {
                    let _ = q.quit().await;
                }
                let _ = tokio::time::timeout(QUIT_WAIT, async {
                    while !h.is_finished() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
                .await;
            }
            h.stop();
            if let Ok(f) = h.wait().await {
                console = f.output(CONSOLE_TAIL).await.stdout;
                let _ = std::fs::remove_dir_all(&f.log_dir);
            }
        }
        self.net.remove_tap(&record.tap).await;
        self.forget(name).await;
        console
    }

    /// Removes an instance's files and record.
    async fn forget(&self, name: &str) {
        let _ = std::fs::remove_dir_all(self.dir(name));
        let _ = std::fs::remove_dir_all(self.config.runtime_dir.join(name));
        let (db, key) = (self.db.clone(), name.to_string());
        if !matches!(
            tokio::task::spawn_blocking(move || db.delete(&INSTANCES, &key)).await,
            Ok(Ok(_))
        ) {
            tracing::warn!(
                kind = "instance",
                name,
                "could not remove the instance's record"
            );
        }
    }

    /// Stops an instance and removes everything of it.
    pub async fn free(self: &Arc<Self>, name: String) -> Result<(), InstanceError> {
        let this = self.clone();
        tokio::spawn(async move { this.free_now(&name).await })
            .await
            .map_err(|e| InstanceError::io("instance task", std::io::Error::other(e)))?
    }

    async fn free_now(&self, name: &str) -> Result<(), InstanceError> {
        validate_name("instance name", name)?;
        let live = self
            .live()
            .remove(name)
            .ok_or_else(|| InstanceError::NotFound {
                name: name.to_string(),
            })?;
        let _ = self.teardown(name, &live.record, live.handle).await;
        tracing::info!(kind = "instance", name, "instance freed");
        Ok(())
    }

    /// Frees every instance (daemon shutdown), in parallel.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let all: Vec<(String, Live)> = std::mem::take(&mut *self.live()).into_iter().collect();
        let n = all.len();
        futures::future::join_all(all.into_iter().map(|(name, l)| async move {
            let _ = self.teardown(&name, &l.record, l.handle).await;
        }))
        .await;
        if n > 0 {
            tracing::info!(freed = n, "instances freed at shutdown");
        }
    }

    /// This daemon with its instances, each asked for its own graph.
    pub async fn graph(&self) -> GraphNode {
        let names: Vec<String> = self.live().keys().cloned().collect();
        let targets: Vec<remote::Target> = names.iter().filter_map(|n| self.target(n)).collect();
        let nested = futures::future::join_all(targets.iter().map(remote::graph)).await;
        GraphNode {
            name: self.config.name.clone(),
            message: String::new(),
            is_root: true,
            nested,
        }
    }

    /// The names and addresses of the running instances.
    pub fn list(&self) -> Vec<(String, Ipv4Addr)> {
        self.live()
            .iter()
            .map(|(n, l)| (n.clone(), l.record.address))
            .collect()
    }

    /// Pulls `references` into this daemon's store and exports them as an
    /// OCI layout in `<dir>/images` (None when there are none).
    async fn stage_images(
        &self,
        dir: &Path,
        references: &[String],
    ) -> Result<Option<PathBuf>, InstanceError> {
        if references.is_empty() {
            return Ok(None);
        }
        let mut pulled = Vec::new();
        for r in references {
            pulled.push(self.images.pull(r, None).await?);
        }
        let layout = dir.join("images");
        self.images.export_layout(&pulled, &layout).await?;
        Ok(Some(layout))
    }

    /// The instance's own graph (for RunPod's answer).
    pub async fn graph_of(&self, name: &str) -> Option<GraphNode> {
        let target = self.target(name)?;
        Some(remote::graph(&target).await)
    }

    /// A client of the instance `name`, as the parent (RunPod).
    pub async fn client_of(&self, name: &str) -> Result<aurae_client::Client, InstanceError> {
        let target = self.target(name).ok_or_else(|| InstanceError::NotFound {
            name: name.to_string(),
        })?;
        target
            .connect()
            .await
            .map_err(|detail| InstanceError::NotAnswering {
                name: name.to_string(),
                address: target.address.clone(),
                secs: 0,
                detail,
            })
    }

    fn target(&self, name: &str) -> Option<remote::Target> {
        let address = self.live().get(name)?.record.address;
        Some(remote::Target::new(
            name,
            address,
            &self.config.ca_crt,
            &certs::InstanceFiles::of(&self.dir(name)),
        ))
    }

    fn image(&self) -> Result<(PathBuf, PathBuf), InstanceError> {
        let dir = &self.config.image_dir;
        let (kernel, initramfs) = (dir.join(KERNEL_FILE), dir.join(INITRAMFS_FILE));
        for f in [&kernel, &initramfs] {
            if !f.is_file() {
                return Err(InstanceError::NoImage {
                    dir: dir.clone(),
                    missing: f.clone(),
                });
            }
        }
        Ok((kernel, initramfs))
    }

    /// Holds `name` and the lowest free address for a Spawn.
    fn reserve(&self, name: &str) -> Result<Ipv4Addr, InstanceError> {
        let live = self.live();
        let mut creating = self.creating();
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(InstanceError::ShuttingDown);
        }
        if live.contains_key(name) || creating.contains_key(name) {
            return Err(InstanceError::AlreadyExists {
                name: name.to_string(),
            });
        }
        let used: BTreeSet<Ipv4Addr> = live
            .values()
            .map(|l| l.record.address)
            .chain(creating.values().copied())
            .collect();
        let address =
            self.config
                .subnet
                .allocate(&used)
                .ok_or_else(|| InstanceError::PoolExhausted {
                    subnet: self.config.subnet.to_string(),
                })?;
        creating.insert(name.to_string(), address);
        Ok(address)
    }

    async fn persist(&self, name: &str, record: &InstanceRecord) -> Result<(), InstanceError> {
        let (db, key, r) = (self.db.clone(), name.to_string(), record.clone());
        tokio::task::spawn_blocking(move || db.put(&INSTANCES, &key, &r))
            .await
            .map_err(|e| InstanceError::io("instance task", std::io::Error::other(e)))??;
        Ok(())
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.config.state_dir.join(name)
    }

    fn qmp_path(&self, name: &str) -> PathBuf {
        self.config.runtime_dir.join(name).join("qmp.sock")
    }

    fn live(&self) -> MutexGuard<'_, BTreeMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn creating(&self) -> MutexGuard<'_, BTreeMap<String, Ipv4Addr>> {
        self.creating.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::observe::WorkloadCounts for Instances {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![("instances", self.live().len())]
    }
}

/// Its certificate names it as a DNS name: a DNS label, so that every TLS
/// client accepts it.
fn validate_instance_name(name: &str) -> Result<(), InstanceError> {
    validate_name("instance name", name)?;
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(InstanceError::NotDnsLabel {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// `inst-` and 8 random hex digits.
fn generated_name() -> String {
    let mut b = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if random.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = (t ^ std::process::id()).to_be_bytes();
    }
    format!("inst-{}", hex::encode(b))
}
