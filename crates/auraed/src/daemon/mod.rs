//! Wiring: builds every subsystem from the configuration, serves them, and
//! stops them at shutdown.
//!
//! The order of a graceful stop (SIGTERM, SIGINT): the listeners stop
//! accepting; every workload kind is told to stop at once (RunExecutable
//! calls and cells get SIGTERM to their cgroups together, scheduled
//! executables are left running for the next daemon unless
//! --stop-workloads-at-exit); after the grace period whatever is left is
//! killed; the answers of the calls in flight leave (idle connections are
//! not waited for); the daemon's cgroups are removed. The whole stop is
//! bounded by the grace period plus [`STOP_SLACK`].

mod inflight;
mod routes;

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use self::inflight::InFlight;
use crate::api::{
    CellsService, CoreService, ImagesService, InstancesService, ObserveService,
    ScheduleExecutableService, ScheduleService, VmsService,
};
use crate::cells::Cells;
use crate::cgroups::{self, CgroupDriver, CgroupError, CgroupPath};
use crate::cni::Cni;
use crate::config::DaemonConfig;
use crate::executables::Executables;
use crate::images::{ImageError, ImageStore, RegistryConfig};
use crate::instances::{Instances, InstancesConfig, IpHostNet};
use crate::logs::{LogLimits, LogStore};
use crate::observe::{DaemonLog, Observer};
use crate::process::{Processes, WorkloadDefaults};
use crate::schedule::{Schedule, ScheduleError};
use crate::server::{self, HandshakeLimits, Listeners, LivePolicy, ServerError};
use crate::state::StateDb;
use crate::vms::{VmError, Vms, VmsConfig};

/// What a graceful stop may take beyond the grace period: teardown of what
/// was killed, the last answers, the removal of the cgroups.
pub const STOP_SLACK: Duration = Duration::from_secs(1);

/// How long the last answers may take to leave once no call is in flight.
const LAST_ANSWERS: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cgroups")]
    Cgroup(#[from] CgroupError),
    #[error("creating {path}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("--socket-group {0:?} is not a known group")]
    UnknownGroup(String),
    #[error("--stop-grace must be a number of seconds from 0 to 3600, not {0}")]
    BadGrace(f64),
    #[error("--default-pids-max / --default-memory-max: {0}")]
    BadDefaultLimits(#[from] crate::cgroups::LimitError),
    #[error("--default-user: {0}")]
    BadDefaultUser(#[from] crate::process::IdentityError),
    #[error("--handshake-timeout must be a number of seconds from 0.1 to 300, not {0}")]
    BadHandshakeTimeout(f64),
    #[error("--max-handshakes must be from 1 to {MAX_HANDSHAKES}, not {0}")]
    BadMaxHandshakes(usize),
    #[error("images")]
    Images(#[from] ImageError),
    #[error("schedule")]
    Schedule(#[from] ScheduleError),
    #[error("building the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("bootstrap")]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error("vms")]
    Vms(#[from] VmError),
    #[error("--vm-stop-timeout must be a number of seconds from 0 to 3600, not {0}")]
    BadVmStopTimeout(f64),
    #[error("--instance-boot-timeout must be a number of seconds from 1 to 3600, not {0}")]
    BadInstanceBootTimeout(f64),
}

/// More handshakes at once than any host has descriptors for would only
/// mean no cap at all.
const MAX_HANDSHAKES: usize = 1 << 20;

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(
    mut config: DaemonConfig,
    log: DaemonLog,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    if config.bootstrap {
        crate::bootstrap::bootstrap(&config)?;
    }
    if !(0.0..=3600.0).contains(&config.stop_grace) {
        return Err(DaemonError::BadGrace(config.stop_grace));
    }
    if !(0.1..=300.0).contains(&config.handshake_timeout) {
        return Err(DaemonError::BadHandshakeTimeout(config.handshake_timeout));
    }
    if !(0.0..=3600.0).contains(&config.vm_stop_timeout) {
        return Err(DaemonError::BadVmStopTimeout(config.vm_stop_timeout));
    }
    if !(1.0..=3600.0).contains(&config.instance_boot_timeout) {
        return Err(DaemonError::BadInstanceBootTimeout(
            config.instance_boot_timeout,
        ));
    }
    if !(1..=MAX_HANDSHAKES).contains(&config.max_handshakes) {
        return Err(DaemonError::BadMaxHandshakes(config.max_handshakes));
    }
    server::raise_nofile_limit();
    match crate::process::detach_controlling_terminal() {
        crate::process::Terminal::None => {}
        crate::process::Terminal::Dropped => {
            tracing::info!("let go of the controlling terminal: workloads cannot open it")
        }
        crate::process::Terminal::Kept => tracing::info!(
            "this daemon leads its terminal's session: each workload gets a session of its own"
        ),
    }
    for dir in [&mut config.state_dir, &mut config.runtime_dir] {
        *dir = real_dir(dir)?;
    }
    let policy = Arc::new(
        LivePolicy::load(&config.authz_policy, config.authz_policy_is_default())
            .map_err(ServerError::from)?,
    );
    tokio::spawn(server::reload_on_sighup(policy.clone(), shutdown.clone()));
    let group = match &config.socket_group {
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| DaemonError::UnknownGroup(g.clone()))?
                .gid,
        ),
        None => None,
    };
    let bound = server::bind(&Listeners {
        socket: config.socket.clone(),
        socket_group: group,
        tcp: config.listen,
        ca_crt: config.ca_crt.clone(),
        server_crt: config.server_crt.clone(),
        server_key: config.server_key.clone(),
        handshakes: HandshakeLimits {
            timeout: Duration::from_secs_f64(config.handshake_timeout),
            max_handshakes: config.max_handshakes,
        },
    })
    .await?;

    let limits = LogLimits {
        max_segment_bytes: config.log_max_size.0,
        max_segments: config.log_max_files.max(1),
    };
    let logs = LogStore::open(
        &config.state_dir.join("logs"),
        limits,
        config.log_retention.0,
    )
    .map_err(|source| DaemonError::Dir {
        path: config.state_dir.join("logs").display().to_string(),
        source,
    })?;
    if let Err(e) = log.attach(&logs.daemon_dir(), limits) {
        tracing::warn!(error = %e, "the daemon log is not kept on disk");
    }
    let state = Arc::new(StateDb::open(&config.state_dir)?);

    let driver = cgroups::detect_host()?;
    let root = CgroupPath::new(&config.cgroup_root)?;
    let processes = Processes::new(
        driver.clone(),
        logs.clone(),
        Duration::from_secs_f64(config.stop_grace),
    )
    .with_defaults(workload_defaults(&config, driver.as_ref())?);
    let executables = Arc::new(Executables::new(processes.clone(), root.join("exec")?));
    executables.clean_leftovers();

    let images = ImageStore::open(&config.state_dir, RegistryConfig::load(&config.registries)?)?;
    images.set_preload_dir(config.image_preload_dir.clone());
    let cells = Cells::new(
        images.clone(),
        processes.clone(),
        root.join("cells")?,
        &config.runtime_dir,
    )
    .with_network(Arc::new(Cni::new(
        config.cni_conf_dir.clone(),
        config.cni_bin_dirs(),
        state.clone(),
    )))
    .with_state(state.clone());
    // Detached cells first: what they hold is not a leftover.
    cells.adopt().await;
    cells.clean_leftovers();
    let schedule = Schedule::open(
        state.clone(),
        processes.clone(),
        root.join("schedule")?,
        true,
    )?;
    let vms = Vms::open(
        state.clone(),
        processes.clone(),
        images.clone(),
        VmsConfig {
            state_dir: config.state_dir.join("vms"),
            runtime_dir: config.runtime_dir.join("vms"),
            cgroup_parent: root.join("vms")?,
            accel: config.vm_accel,
            stop_timeout: Duration::from_secs_f64(config.vm_stop_timeout),
        },
    )?;
    let name = config.name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "auraed".into())
    });
    let instances = Instances::new(
        InstancesConfig {
            name: name.clone(),
            state_dir: config.state_dir.join("instances"),
            runtime_dir: config.runtime_dir.join("instances"),
            cgroup_parent: root.join("instances")?,
            image_dir: config.instance_image_dir.clone(),
            ca_crt: config.ca_crt.clone(),
            ca_key: config.ca_key.clone(),
            subnet: config.instance_subnet,
            bridge: config.instance_bridge.clone(),
            accel: vms.accel(),
            boot_timeout: Duration::from_secs_f64(config.instance_boot_timeout),
        },
        processes.clone(),
        state,
        Arc::new(IpHostNet),
        images.clone(),
    );
    // Before serving, so that a restarted daemon answers with its units running
    // (adopted from the previous daemon, or started), and nothing of the
    // instances of a killed daemon is left.
    schedule.start().await;
    vms.start().await;
    instances.clean_leftovers().await;

    let observe = ObserveService::new(name.clone(), Observer::new(logs.clone()), processes.clone())
        .with_shutdown(shutdown.clone())
        .with_counts(schedule.clone())
        .with_counts(Arc::new(cells.clone()))
        .with_counts(vms.clone())
        .with_counts(instances.clone());
    let inflight = InFlight::default();
    let routes = routes::build(
        routes::Services {
            observe,
            core: CoreService::new(
                executables.clone(),
                cells.clone(),
                vms.clone(),
                instances.clone(),
            ),
            vms: VmsService::new(vms.clone()),
            cells: CellsService::new(cells.clone()),
            schedule: ScheduleService::new(schedule.clone()),
            schedule_executable: ScheduleExecutableService::new(schedule.clone()),
            images: ImagesService::new(images.clone()),
            instances: InstancesService::new(instances.clone()),
        },
        &inflight,
    )
    .await?;

    tracing::info!(
        instance = %name,
        socket = %config.socket.display(),
        tcp = ?bound.tcp_addr(),
        cgroups = %driver.version(),
        version = env!("CARGO_PKG_VERSION"),
        "auraed serving"
    );
    let served = server::serve(bound, routes, policy, shutdown.clone());
    tokio::pin!(served);
    let result = tokio::select! {
        r = &mut served => {
            // The server failed: the workloads bound to the daemon go with it.
            stop_workloads(&schedule, &cells, &vms, &instances, &processes, config.stop_workloads_at_exit).await;
            r
        }
        _ = shutdown.cancelled() => {
            let deadline = tokio::time::Instant::now() + processes.grace() + STOP_SLACK;
            tracing::info!(stop_scheduled = config.stop_workloads_at_exit, grace_ms = processes.grace().as_millis() as u64, "shutting down: stopping workloads");
            let stopped = stop_workloads(&schedule, &cells, &vms, &instances, &processes, config.stop_workloads_at_exit);
            if tokio::time::timeout_at(deadline, stopped).await.is_err() {
                tracing::warn!("workloads did not all stop within the grace period: exiting anyway");
            }
            // The answers of the calls whose workloads just ended; idle connections are not waited for.
            let _ = tokio::time::timeout_at(deadline, inflight.drained()).await;
            let last = deadline.min(tokio::time::Instant::now() + LAST_ANSWERS);
            match tokio::time::timeout_at(last, &mut served).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = std::fs::remove_file(&config.socket);
                    Ok(())
                }
            }
        }
    };
    remove_cgroup_root(driver.as_ref(), &cells, &root, STOP_SLACK).await;
    log.detach();
    result?;
    tracing::info!("auraed stopped");
    Ok(())
}

/// Every kind of workload at once: scheduled executables, VMs and detached
/// cells are left running for the next daemon unless `stop_scheduled`;
/// RunCell cells, nested instances and RunExecutable calls are bound to the
/// daemon and stopped.
async fn stop_workloads(
    schedule: &Schedule,
    cells: &Cells,
    vms: &Vms,
    instances: &Instances,
    processes: &Processes,
    stop_scheduled: bool,
) {
    // Supervisors first, so none restarts what the process layer stops.
    processes.shutdown();
    tokio::join!(
        schedule.shutdown(stop_scheduled),
        cells.shutdown(stop_scheduled),
        vms.shutdown(stop_scheduled),
        instances.shutdown()
    );
}

/// Leaves no empty cgroup directories behind at a graceful exit: waits
/// (bounded) for the stopped workloads to leave, then removes their trees.
/// The scheduled executables' tree stays while they run on.
async fn remove_cgroup_root(
    driver: &dyn CgroupDriver,
    cells: &Cells,
    root: &CgroupPath,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    let busy = |p: &CgroupPath| driver.pids(p).is_ok_and(|p| !p.is_empty());
    for sub in ["exec", "cells", "instances"] {
        if sub == "cells" && cells.keeps_running() {
            continue;
        }
        let Ok(path) = root.join(sub) else { continue };
        while busy(&path) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = driver.remove(&path) {
            tracing::warn!(cgroup = path.as_str(), error = %e, "removing the daemon's cgroups at exit");
        }
    }
    // libcontainer made the cells' parents in hierarchies the driver does not use.
    if !cells.keeps_running() {
        cells.remove_cgroup_parent();
    }
    if busy(root) {
        tracing::info!(
            cgroup = root.as_str(),
            "workloads left running: keeping their cgroups"
        );
        return;
    }
    if let Err(e) = driver.remove(root) {
        tracing::warn!(cgroup = root.as_str(), error = %crate::error_chain::chain(&e), "removing the daemon's cgroups at exit");
    }
}

/// The defaults every workload gets, checked against this host: a limit
/// whose controller the host lacks is dropped with a warning (it could
/// never be applied), an unknown default user stops the daemon.
fn workload_defaults(
    config: &DaemonConfig,
    driver: &dyn CgroupDriver,
) -> Result<WorkloadDefaults, DaemonError> {
    let mut limits = cgroups::Limits::from_wire(
        config.default_pids_max,
        config.default_memory_max.map_or(0, |b| b.0),
        0,
    );
    limits.validate()?;
    if limits.pids.is_some() && !driver.has_controller("pids") {
        tracing::warn!(
            "--default-pids-max is not applied: this host has no pids cgroup controller"
        );
        limits.pids = None;
    }
    if limits.memory_bytes.is_some() && !driver.has_controller("memory") {
        tracing::warn!(
            "--default-memory-max is not applied: this host has no memory cgroup controller"
        );
        limits.memory_bytes = None;
    }
    crate::process::resolve_identity("", "", &config.default_user)?;
    tracing::info!(limits = ?limits, user = %config.default_user, "workload defaults");
    Ok(WorkloadDefaults {
        limits,
        user: config.default_user.clone(),
    })
}

/// Creates `dir` (mode 0700) if needed and returns its real path: mountinfo
/// names mounts by real paths (on Debian /var/run is a symlink to /run), so
/// every path later compared with it must be resolved once, here.
fn real_dir(dir: &std::path::Path) -> Result<std::path::PathBuf, DaemonError> {
    let err = |source| DaemonError::Dir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    std::fs::canonicalize(dir).map_err(err)
}
