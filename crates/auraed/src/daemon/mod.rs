//! Wiring: builds every subsystem from the configuration, serves them, and
//! stops them in order at shutdown.

mod routes;

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::api::{
    CellsService, CoreService, ImagesService, ObserveService, ScheduleExecutableService,
    ScheduleService,
};
use crate::cells::Cells;
use crate::cgroups::{self, CgroupDriver, CgroupError, CgroupPath};
use crate::config::DaemonConfig;
use crate::executables::Executables;
use crate::images::{ImageError, ImageStore, RegistryConfig};
use crate::logs::{LogLimits, LogStore};
use crate::observe::{DaemonLog, Observer};
use crate::process::{Processes, WorkloadDefaults};
use crate::schedule::{Schedule, ScheduleError};
use crate::server::{self, Listeners, Policy, ServerError};
use crate::state::StateDb;

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
    #[error("images")]
    Images(#[from] ImageError),
    #[error("schedule")]
    Schedule(#[from] ScheduleError),
    #[error("building the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("bootstrapping the PKI")]
    Pki(#[from] crate::pki::PkiError),
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(
    config: DaemonConfig,
    log: DaemonLog,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    if config.bootstrap {
        crate::bootstrap::bootstrap(&config)?;
    }
    if !(0.0..=3600.0).contains(&config.stop_grace) {
        return Err(DaemonError::BadGrace(config.stop_grace));
    }
    for dir in [&config.state_dir, &config.runtime_dir] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| DaemonError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
    }
    let policy = Arc::new(load_policy(&config)?);
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
    let cells = Cells::new(
        images.clone(),
        driver.clone(),
        logs.clone(),
        root.join("cells")?,
        &config.runtime_dir,
        Duration::from_secs_f64(config.stop_grace),
    );
    cells.clean_leftovers();
    let schedule = Schedule::open(state, processes.clone(), root.join("schedule")?, true)?;
    // Before serving, so that a restarted daemon answers with its units running
    // (adopted from the previous daemon, or started).
    schedule.start().await;

    let name = config.name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "auraed".into())
    });
    let observe = ObserveService::new(name.clone(), Observer::new(logs.clone()), processes.clone())
        .with_shutdown(shutdown.clone())
        .with_counts(schedule.clone())
        .with_counts(Arc::new(cells.clone()));
    let routes = routes::build(routes::Services {
        observe,
        core: CoreService::new(executables.clone(), cells.clone()),
        cells: CellsService::new(cells.clone()),
        schedule: ScheduleService::new(schedule.clone()),
        schedule_executable: ScheduleExecutableService::new(schedule.clone()),
        images: ImagesService::new(images.clone()),
    })
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
        r = &mut served => r,
        _ = shutdown.cancelled() => {
            tracing::info!(stop_scheduled = config.stop_workloads_at_exit, "shutting down: stopping workloads");
            stop_workloads(&schedule, &cells, &processes, config.stop_workloads_at_exit).await;
            // In-flight calls end once their workloads are stopped; bound the wait anyway.
            let bound = processes.grace() + Duration::from_secs(5);
            match tokio::time::timeout(bound, &mut served).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = std::fs::remove_file(&config.socket);
                    Ok(())
                }
            }
        }
    };
    stop_workloads(&schedule, &cells, &processes, config.stop_workloads_at_exit).await;
    remove_cgroup_root(
        driver.as_ref(),
        &root,
        processes.grace() + Duration::from_secs(2),
    )
    .await;
    log.detach();
    result?;
    tracing::info!("auraed stopped");
    Ok(())
}

/// Every kind of workload at once: scheduled executables are left running
/// for the next daemon unless `stop_scheduled`; cells and RunExecutable
/// calls are bound to the daemon and stopped.
async fn stop_workloads(
    schedule: &Schedule,
    cells: &Cells,
    processes: &Processes,
    stop_scheduled: bool,
) {
    // Supervisors first, so none restarts what the process layer stops.
    processes.shutdown();
    tokio::join!(schedule.shutdown(stop_scheduled), cells.shutdown());
}

/// Leaves no empty cgroup directories behind at a graceful exit: waits
/// (bounded) for the stopped workloads to leave, then removes their trees.
/// The scheduled executables' tree stays while they run on.
async fn remove_cgroup_root(driver: &dyn CgroupDriver, root: &CgroupPath, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let busy = |p: &CgroupPath| driver.pids(p).is_ok_and(|p| !p.is_empty());
    for sub in ["exec", "cells"] {
        let Ok(path) = root.join(sub) else { continue };
        while busy(&path) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = driver.remove(&path) {
            tracing::warn!(cgroup = path.as_str(), error = %e, "removing the daemon's cgroups at exit");
        }
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

fn load_policy(config: &DaemonConfig) -> Result<Policy, DaemonError> {
    if !config.authz_policy.exists() && config.authz_policy_is_default() {
        tracing::warn!(
            policy = %config.authz_policy.display(),
            "no authorization policy: every client certificate signed by the CA may call every method"
        );
        return Ok(Policy::AllowAll);
    }
    let policy = Policy::load(&config.authz_policy).map_err(ServerError::from)?;
    tracing::info!(policy = %config.authz_policy.display(), "authorization policy loaded");
    Ok(policy)
}
