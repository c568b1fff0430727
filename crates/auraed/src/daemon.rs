//! Wiring: builds every subsystem from the configuration, serves them, and
//! stops them in order at shutdown.

use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;

use aurae_proto::observe::observe_server::ObserveServer;
use aurae_proto::runtime::core_server::CoreServer;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::cgroups::{self, CgroupError, CgroupPath};
use crate::config::DaemonConfig;
use crate::executables::{CoreService, Executables};
use crate::observe::{DaemonLog, ObserveService, ProcessOutputs};
use crate::process::Processes;
use crate::server::{self, Listeners, Policy, ServerError};

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cgroups: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("creating {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("--socket-group {0:?} is not a known group")]
    UnknownGroup(String),
    #[error("--stop-grace must be a number of seconds from 0 to 3600, not {0}")]
    BadGrace(f64),
    #[error("bootstrapping the PKI: {0}")]
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

    let driver = cgroups::detect_host()?;
    let root = CgroupPath::new(&config.cgroup_root)?;
    let outputs = Arc::new(ProcessOutputs::default());
    let processes = Processes::new(
        driver.clone(),
        outputs.clone(),
        Duration::from_secs_f64(config.stop_grace),
    );
    let executables = Arc::new(Executables::new(processes.clone(), root.join("exec")?));
    executables.clean_leftovers();

    let name = config.name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "auraed".into())
    });
    let observe = ObserveService::new(name.clone(), log, outputs);
    let routes = routes(observe, CoreService::new(executables.clone())).await;

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
            tracing::info!("shutting down: stopping workloads");
            processes.shutdown();
            // Open log streams would hold the server forever: give in-flight calls
            // time to finish once their workloads are stopped, then go.
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
    processes.shutdown();
    result?;
    tracing::info!("auraed stopped");
    Ok(())
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

async fn routes(observe: ObserveService, core: CoreService) -> Routes {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ObserveServer<ObserveService>>().await;
    health.set_serving::<CoreServer<CoreService>>().await;
    let mut builder = Routes::builder();
    builder
        .add_service(health_service)
        .add_service(ObserveServer::new(observe))
        .add_service(CoreServer::new(core));
    if let Ok(r) = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(aurae_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
    {
        builder.add_service(r);
    }
    if let Ok(r) = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(aurae_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
    {
        builder.add_service(r);
    }
    builder.routes()
}
