//! Virtual machines: QEMU guests booted from a disk image pulled from an
//! http(s) URL or a containerDisk in an OCI registry, each on its own qcow2
//! overlay, that outlive the call, the client and the daemon.
//!
//! - `accel`: KVM only where the host really has it, else TCG.
//! - `fetch`: URL images, conditional re-resolve, cache by digest.
//! - `disk`: `qemu-img info` checks and the per-VM overlay.
//! - `qemu`, `qmp`: the hypervisor's command line and its control socket.
//! - `net`: user-mode, none, or a TAP of its own on an existing bridge.
//! - `progress`: the phase and bytes downloaded of a VM being created.
//! - `store`: the VMs' records in the state database.
//! - `supervisor`: one task per running VM (stop, power-off, restarts).
//!
//! The hypervisor runs detached through the process layer's monitor, in
//! `<cgroup root>/vms/<name>`, its serial console written to the VM's log,
//! so it keeps running and logging while the daemon is down. The
//! `runtime.Core/RunVirtualMachine` and `vms.Vms` handlers are in
//! `crate::api`. Operator documentation: docs/vms.md.

pub mod accel;
pub(crate) mod ctx;
mod disk;
mod error;
mod fetch;
pub(crate) mod net;
mod progress;
pub(crate) mod qemu;
pub(crate) mod qmp;
mod store;
mod supervisor;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use accel::{Accel, AccelChoice};
pub use error::VmError;
pub use store::Want;

use crate::cgroups::CgroupPath;
use crate::images::ImageStore;
use crate::observe::WorkloadCounts;
use crate::process::{Adopted, ExitKind, Processes};
use crate::state::StateDb;
use crate::validation::validate_name;
use crate::workload::Status;
use ctx::Ctx;
use fetch::DiskCache;
use progress::{Creating, CreationGuard};
pub use progress::{Phase, ProgressView};
use store::{VmRecord, MACHINES};
use supervisor::{lock, SharedState, Supervisor, VmState};

pub const DEFAULT_MEMORY_MIB: u32 = 512;
pub const DEFAULT_VCPUS: u32 = 1;
const MAX_MEMORY_MIB: u32 = 1024 * 1024;
const MAX_VCPUS: u32 = 255;

/// A VM to create.
#[derive(Debug, Clone, Default)]
pub struct VmSpec {
    pub name: String,
    pub image: String,
    /// 0: the default.
    pub memory_mib: u32,
    /// 0: the default.
    pub vcpus: u32,
    /// `""`/`user`, `none` or `bridge:NAME`.
    pub network: String,
    pub caller: String,
}

/// A VM as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmView {
    pub name: String,
    pub image: String,
    pub digest: String,
    pub status: Status,
    /// The hypervisor's pid while it runs.
    pub pid: Option<i32>,
    pub message: String,
    /// Set while the VM is being created.
    pub progress: Option<ProgressView>,
}

/// Where things go, and the daemon's choices.
pub struct VmsConfig {
    /// `<state_dir>/vms`: the disk cache and the overlays.
    pub state_dir: PathBuf,
    /// `<runtime_dir>/vms`: QMP sockets.
    pub runtime_dir: PathBuf,
    /// `<cgroup root>/vms`: each VM runs in `<cgroup_parent>/<name>`.
    pub cgroup_parent: CgroupPath,
    pub accel: AccelChoice,
    /// How long a guest may take to power off after the power button.
    pub stop_timeout: Duration,
}

struct Machine {
    record: VmRecord,
    state: SharedState,
    /// Serialises Start/Stop/Delete of this VM.
    lock: Arc<tokio::sync::Mutex<()>>,
    supervisor: Option<Supervisor>,
}

/// The VMs of this daemon.
pub struct Vms {
    ctx: Arc<Ctx>,
    machines: Mutex<BTreeMap<String, Machine>>,
    /// VMs being created (not yet in `machines`).
    creating: Creating,
    shutting_down: AtomicBool,
}

impl Vms {
    /// Opens the VMs' records; nothing runs before [`Vms::start`].
    pub fn open(
        db: Arc<StateDb>,
        processes: Processes,
        images: Arc<ImageStore>,
        config: VmsConfig,
    ) -> Result<Arc<Self>, VmError> {
        let (accel, why) = accel::detect(config.accel);
        tracing::info!(accel = %accel, reason = %why, "vm accelerator chosen");
        let records = db.all(&MACHINES)?;
        let machines_dir = config.state_dir.join("machines");
        std::fs::create_dir_all(&machines_dir)
            .map_err(|e| VmError::io(format!("creating {}", machines_dir.display()), e))?;
        let ctx = Arc::new(Ctx {
            processes,
            db,
            cache: DiskCache::open(&config.state_dir.join("cache"))?,
            images,
            machines_dir,
            runtime_dir: config.runtime_dir,
            cgroup_parent: config.cgroup_parent,
            accel,
            stop_timeout: config.stop_timeout,
            tap_prefix: net::tap_prefix(&config.state_dir),
        });
        let machines = records
            .into_iter()
            .map(|(name, record)| {
                let status = match record.want {
                    Want::Running => Status::Standby,
                    Want::Stopped => Status::Passive,
                    Want::PoweredOff => Status::Complete,
                    Want::Failed => Status::Error,
                };
                let state = VmState {
                    status,
                    pid: 0,
                    message: record.message.clone(),
                };
                let m = Machine {
                    record,
                    state: Arc::new(Mutex::new(state)),
                    lock: Arc::default(),
                    supervisor: None,
                };
                (name, m)
            })
            .collect();
        Ok(Arc::new(Self {
            ctx,
            machines: Mutex::new(machines),
            creating: Creating::default(),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// Stops what an earlier daemon left in the VMs' cgroups without a
    /// record (it died while creating a VM), adopts the hypervisors it left
    /// running and boots the VMs that should run but do not.
    pub async fn start(&self) {
        let recorded = self
            .machines()
            .values()
            .filter_map(|m| m.record.run.as_ref().map(|r| r.cgroup.clone()))
            .collect();
        self.ctx
            .processes
            .clean_leftovers(&self.ctx.cgroup_parent, recorded, "vm")
            .await;
        self.clean_leftover_taps().await;
        let wanted: Vec<(String, VmRecord, SharedState)> = self
            .machines()
            .iter()
            .filter(|(_, m)| m.record.want == Want::Running)
            .map(|(n, m)| (n.clone(), m.record.clone(), m.state.clone()))
            .collect();
        for (name, mut record, state) in wanted {
            let handle = match record.run.clone() {
                Some(run) => match self.ctx.processes.adopt(&run).await {
                    Adopted::Running(h) => {
                        tracing::info!(kind = "vm", name = %name, pid = h.pid(), "vm adopted from the previous daemon");
                        Some(h)
                    }
                    Adopted::Ended(r) => {
                        record.run = None;
                        if matches!(&r, Ok(f) if f.exit == ExitKind::Code(0)) {
                            tracing::info!(kind = "vm", name = %name, "vm guest powered off while the daemon was down");
                            record.want = Want::PoweredOff;
                            record.message = "the guest powered itself off".into();
                            self.ctx.release_net(&record).await;
                            self.ctx.persist(&name, &record).await;
                            let mut s = lock(&state);
                            s.status = Status::Complete;
                            s.message = record.message.clone();
                            continue;
                        }
                        tracing::warn!(kind = "vm", name = %name, "vm hypervisor ended while the daemon was down: booting it again");
                        None
                    }
                },
                None => None,
            };
            if let Some(h) = &handle {
                // Listed as running from the first answer of this daemon.
                let mut s = lock(&state);
                s.status = Status::Active;
                s.pid = h.pid();
            }
            let sup = Supervisor::start(self.ctx.clone(), name.clone(), record, state, handle);
            if let Some(m) = self.machines().get_mut(&name) {
                m.supervisor = Some(sup);
            }
        }
    }

    /// Removes this daemon's TAPs that no VM that should run owns (a VM
    /// being created, or stopped, when an earlier daemon died).
    async fn clean_leftover_taps(&self) {
        let owned: HashSet<String> = self
            .machines()
            .values()
            .filter(|m| m.record.want == Want::Running)
            .map(|m| m.record.tap.clone())
            .collect();
        for tap in net::taps_with_prefix(&self.ctx.tap_prefix) {
            if !owned.contains(&tap) {
                tracing::info!(kind = "vm", tap = %tap, "removing a tap device left by an earlier daemon");
                net::remove_tap(&tap).await;
            }
        }
    }

    /// Ends every supervisor. VMs keep running for the next daemon unless
    /// `stop_vms` (then each is stopped gracefully, in parallel).
    pub async fn shutdown(&self, stop_vms: bool) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let sups: Vec<Supervisor> = self
            .machines()
            .values_mut()
            .filter_map(|m| m.supervisor.take())
            .collect();
        let n = sups.len();
        if stop_vms {
            futures::future::join_all(sups.into_iter().map(Supervisor::stop)).await;
            tracing::info!(stopped = n, "vms stopped");
        } else {
            futures::future::join_all(sups.into_iter().map(Supervisor::detach)).await;
            tracing::info!(left_running = n, "vms left running for the next daemon");
        }
    }

    /// Creates and boots a VM; returns once it runs.
    pub async fn run(self: &Arc<Self>, spec: VmSpec) -> Result<VmView, VmError> {
        let this = self.clone();
        in_task(async move { this.run_now(spec).await }).await
    }

    async fn run_now(&self, spec: VmSpec) -> Result<VmView, VmError> {
        let name = spec.name.clone();
        validate_name("vm name", &name)?;
        let memory_mib = size(
            "memory_mib",
            spec.memory_mib,
            DEFAULT_MEMORY_MIB,
            16,
            MAX_MEMORY_MIB,
            "16 to 1048576 MiB (0: 512)",
        )?;
        let vcpus = size(
            "vcpus",
            spec.vcpus,
            DEFAULT_VCPUS,
            1,
            MAX_VCPUS,
            "1 to 255 (0: 1)",
        )?;
        if spec.image.is_empty() {
            return Err(VmError::BadImage {
                image: String::new(),
                detail: "no image given".into(),
            });
        }
        let tap = match net::Network::parse(&spec.network)? {
            net::Network::Bridge(bridge) => {
                net::check_bridge(&bridge)?;
                net::tap_name(&self.ctx.tap_prefix, &name)
            }
            _ => String::new(),
        };
        let reserved = self.reserve(&name, &spec.image)?;
        let progress = reserved.progress();
        let ctx = &self.ctx;
        let ctx::Resolved {
            digest,
            base,
            format,
            layers,
        } = ctx.resolve(&spec.image, progress).await?;
        let overlay = ctx.overlay_path(&name);
        let dir = overlay.parent().map(Path::to_path_buf).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| VmError::io(format!("creating {}", dir.display()), e))?;
        let undo = |ctx: &Ctx| {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(ctx.runtime_dir.join(&name));
        };
        if let Err(e) = disk::create_overlay(&base, &format, &overlay).await {
            undo(ctx);
            return Err(e);
        }
        if let Some(layers) = layers {
            if let Err(e) = ctx.lease(&spec.image, layers, &overlay).await {
                undo(ctx);
                return Err(e);
            }
        }
        let record = VmRecord {
            image: spec.image.clone(),
            digest,
            base,
            format,
            memory_mib,
            vcpus,
            want: Want::Running,
            network: spec.network.clone(),
            tap,
            message: String::new(),
            run: None,
        };
        progress.phase(Phase::Booting);
        let (handle, run) = match ctx.boot(&name, &record).await {
            Ok(b) => b,
            Err(e) => {
                let (db, key) = (ctx.db.clone(), name.clone());
                let _ = tokio::task::spawn_blocking(move || db.delete(&MACHINES, &key)).await;
                undo(ctx);
                tracing::warn!(kind = "vm", name = %name, image = %spec.image, caller = %spec.caller, error = %e, "vm could not be created");
                return Err(e);
            }
        };
        let pid = handle.pid();
        let mut record = record;
        record.run = Some(run);
        let state = Arc::new(Mutex::new(VmState {
            status: Status::Active,
            pid,
            message: String::new(),
        }));
        let sup = Supervisor::start(
            ctx.clone(),
            name.clone(),
            record.clone(),
            state.clone(),
            Some(handle),
        );
        tracing::info!(kind = "vm", name = %name, pid, image = %record.image, digest = %record.digest, memory_mib, vcpus, caller = %spec.caller, "vm created");
        self.machines().insert(
            name.clone(),
            Machine {
                record,
                state,
                lock: Arc::default(),
                supervisor: Some(sup),
            },
        );
        self.view(&name).ok_or(VmError::NotFound { name })
    }

    /// The accelerator chosen at open (also for nested instances).
    pub fn accel(&self) -> Accel {
        self.ctx.accel
    }

    /// Every VM, sorted by name, with those being created (`Standby`,
    /// with their progress).
    pub fn list(&self) -> Vec<VmView> {
        let names: Vec<String> = self.machines().keys().cloned().collect();
        let mut views: Vec<VmView> = names.iter().filter_map(|n| self.view(n)).collect();
        let creating: Vec<VmView> = self
            .creating
            .list()
            .into_iter()
            // Created a moment ago: already listed from its record.
            .filter(|(name, _, _)| !names.contains(name))
            .map(|(name, image, progress)| VmView {
                name,
                image,
                digest: String::new(),
                status: Status::Standby,
                pid: None,
                message: format!("being created: {}", progress.phase.as_str()),
                progress: Some(progress),
            })
            .collect();
        if !creating.is_empty() {
            views.extend(creating);
            views.sort_by(|a, b| a.name.cmp(&b.name));
        }
        views
    }

    /// Boots a VM that is off again, on the same overlay.
    pub async fn start_vm(self: &Arc<Self>, name: String) -> Result<VmView, VmError> {
        let this = self.clone();
        in_task(async move { this.start_now(name).await }).await
    }

    async fn start_now(&self, name: String) -> Result<VmView, VmError> {
        let (lock_, record, state) = self.entry(&name)?;
        let _g = lock_.lock().await;
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(VmError::ShuttingDown);
        }
        if self.supervised(&name) {
            return self.view(&name).ok_or(VmError::NotFound { name });
        }
        let (handle, run) = self.ctx.boot(&name, &record).await?;
        {
            let mut s = lock(&state);
            s.status = Status::Active;
            s.pid = handle.pid();
            s.message.clear();
        }
        let mut record = record;
        record.want = Want::Running;
        record.message.clear();
        record.run = Some(run);
        let sup = Supervisor::start(
            self.ctx.clone(),
            name.clone(),
            record.clone(),
            state,
            Some(handle),
        );
        if let Some(m) = self.machines().get_mut(&name) {
            m.record = record;
            m.supervisor = Some(sup);
        }
        tracing::info!(kind = "vm", name = %name, "vm started");
        self.view(&name).ok_or(VmError::NotFound { name })
    }

    /// Stops a VM (graceful, then forced); the overlay and record stay.
    pub async fn stop_vm(self: &Arc<Self>, name: String) -> Result<VmView, VmError> {
        let this = self.clone();
        in_task(async move { this.stop_now(name).await }).await
    }

    async fn stop_now(&self, name: String) -> Result<VmView, VmError> {
        let (lock_, mut record, state) = self.entry(&name)?;
        let _g = lock_.lock().await;
        let sup = self
            .machines()
            .get_mut(&name)
            .and_then(|m| m.supervisor.take());
        match sup {
            Some(s) => s.stop().await,
            None => supervisor::off(&self.ctx, &name, &mut record, &state).await,
        }
        if let Some(m) = self.machines().get_mut(&name) {
            m.record.want = Want::Stopped;
            m.record.run = None;
        }
        self.view(&name).ok_or(VmError::NotFound { name })
    }

    /// Stops a VM if it runs and removes its overlay and record.
    pub async fn delete(self: &Arc<Self>, name: String) -> Result<VmView, VmError> {
        let this = self.clone();
        in_task(async move { this.delete_now(name).await }).await
    }

    async fn delete_now(&self, name: String) -> Result<VmView, VmError> {
        let (lock_, mut record_tap, _) = self.entry(&name)?;
        let _g = lock_.lock().await;
        let sup = self
            .machines()
            .get_mut(&name)
            .and_then(|m| m.supervisor.take());
        if let Some(s) = sup {
            s.stop().await;
        }
        if let Some(m) = self.machines().get(&name) {
            record_tap = m.record.clone();
        }
        self.ctx.release_net(&record_tap).await;
        let mut view = self
            .view(&name)
            .ok_or(VmError::NotFound { name: name.clone() })?;
        let (db, key) = (self.ctx.db.clone(), name.clone());
        tokio::task::spawn_blocking(move || db.delete(&MACHINES, &key))
            .await
            .map_err(|e| VmError::io("vm task", std::io::Error::other(e.to_string())))??;
        if let Some(dir) = self.ctx.overlay_path(&name).parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = std::fs::remove_dir_all(self.ctx.runtime_dir.join(&name));
        self.machines().remove(&name);
        tracing::info!(kind = "vm", name = %name, "vm deleted");
        view.status = Status::Passive;
        view.pid = None;
        view.message = "deleted".into();
        Ok(view)
    }

    fn entry(
        &self,
        name: &str,
    ) -> Result<(Arc<tokio::sync::Mutex<()>>, VmRecord, SharedState), VmError> {
        validate_name("vm name", name)?;
        self.machines()
            .get(name)
            .map(|m| (m.lock.clone(), m.record.clone(), m.state.clone()))
            .ok_or_else(|| VmError::NotFound {
                name: name.to_string(),
            })
    }

    fn supervised(&self, name: &str) -> bool {
        self.machines()
            .get(name)
            .and_then(|m| m.supervisor.as_ref())
            .is_some_and(Supervisor::is_running)
    }

    fn view(&self, name: &str) -> Option<VmView> {
        let machines = self.machines();
        let m = machines.get(name)?;
        let s = lock(&m.state).clone();
        Some(VmView {
            name: name.to_string(),
            image: m.record.image.clone(),
            digest: m.record.digest.clone(),
            status: s.status,
            pid: (s.pid > 0).then_some(s.pid),
            message: s.message,
            progress: None,
        })
    }

    fn reserve(&self, name: &str, image: &str) -> Result<CreationGuard<'_>, VmError> {
        let already = || VmError::AlreadyExists {
            name: name.to_string(),
        };
        if self.machines().contains_key(name) {
            return Err(already());
        }
        let guard = self.creating.begin(name, image).ok_or_else(already)?;
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(VmError::ShuttingDown);
        }
        Ok(guard)
    }

    fn machines(&self) -> MutexGuard<'_, BTreeMap<String, Machine>> {
        self.machines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn size(
    what: &'static str,
    v: u32,
    default: u32,
    min: u32,
    max: u32,
    range: &'static str,
) -> Result<u32, VmError> {
    match v {
        0 => Ok(default),
        v if (min..=max).contains(&v) => Ok(v),
        value => Err(VmError::BadSize { what, range, value }),
    }
}

/// Runs `fut` in a task of its own: a client that goes away mid-call
/// cannot leave a VM half made, half stopped or half deleted.
async fn in_task<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T, VmError>> + Send + 'static,
) -> Result<T, VmError> {
    tokio::spawn(fut)
        .await
        .map_err(|e| VmError::io("vm task", std::io::Error::other(e.to_string())))?
}

impl WorkloadCounts for Vms {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        let running = self
            .machines()
            .values()
            .filter(|m| lock(&m.state).status == Status::Active)
            .count();
        vec![("vms", running)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_stay_in_range() {
        assert_eq!(size("m", 0, 512, 16, 64, "r").expect("default"), 512);
        assert_eq!(size("m", 32, 512, 16, 64, "r").expect("in range"), 32);
        assert!(size("m", 8, 512, 16, 64, "r").is_err());
        assert!(size("m", 65, 512, 16, 64, "r").is_err());
    }
}
