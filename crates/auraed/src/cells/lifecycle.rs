//! One cell from its pulled images to its final status: set up (directory,
//! sandbox namespaces, cgroups, one bundle per container), create and start
//! every container, wait for all of them (or stop them), tear down.
//!
//! Each container runs under a helper process (`runtime`, `helper`) that
//! the process layer supervises from the container's creation, as any
//! other process: its output into its log, its exit, its stop (SIGTERM to
//! its cgroup, the grace period, SIGKILL) and the drain of its output are
//! `crate::process`'s, not written again here. Stopping a cell cancels the
//! stop token of every container at once.
//!
//! Teardown always runs, in the order that lets each step succeed: kill
//! every process of the cell, wait (bounded) for the supervisors to reap
//! and drain, unmount the root filesystems and everything else under the
//! cell's directory, remove the directory (libcontainer's state with it)
//! and the cgroups. If the task panics, `Drop` still does the blocking part.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cgroup::CellCgroups;
use super::core::{CellResult, ContainerResult, Inner, Phase, Reservation};
use super::error::CellError;
use super::image::{MountedRootfs, PulledImage};
use super::network::{self, NetworkRequest};
use super::request::CellRequest;
use super::runtime::{Control, Created};
use super::{limits, mounts, runtime, sandbox, spec, user};
use crate::cgroups::Limits;
use crate::error_chain::chain;
use crate::logs::Kind;
use crate::process::{open_log, ExitKind, Finished, OutputLog, ProcessError, ProcessHandle};
use crate::workload::Status as MetaStatus;

/// How long to wait, beyond the grace period, for a killed container's
/// supervisor to reap it and drain its output.
pub(super) const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time a container's create or start may take, whatever the
/// grace period: a start is no stop, and a loaded node is slow.
pub(super) const MIN_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// `meta.message` of a container the OOM killer hit.
pub(super) const OOM_KILLED: &str = "OOM killed";

/// How a container that exited ended: Exited, or OomKilled when its
/// cgroup counted an OOM kill (the supervisor read it before removing it).
fn ended(f: &Finished) -> Outcome {
    if f.oom_killed {
        Outcome::OomKilled(f.exit)
    } else {
        Outcome::Exited(f.exit)
    }
}

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

/// How a container ended, or why it never ran.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Exited(ExitKind),
    /// Exited, and the OOM killer had killed one of its processes.
    OomKilled(ExitKind),
    Failed(String),
    NotStarted(String),
}

pub(super) struct ContainerRun {
    pub name: String,
    /// Its own limits (the cell's bound it from above).
    limits: Limits,
    image: PulledImage,
    /// The bundle: config.json and the root filesystem.
    pub dir: PathBuf,
    pub rootfs: Option<Box<dyn MountedRootfs>>,
    /// The helper's control socket, from create to teardown.
    control: Option<Control>,
    pid: Option<i32>,
    /// The process layer's supervisor, from create until its end is collected.
    handle: Option<ProcessHandle>,
    outcome: Option<Outcome>,
}

impl ContainerRun {
    /// Container `name` of the cell in `cell_dir`, from its pulled image.
    pub fn new(cell_dir: &Path, name: &str, limits: Limits, image: PulledImage) -> Self {
        ContainerRun {
            name: name.to_string(),
            limits,
            image,
            dir: cell_dir.join("containers").join(name),
            rootfs: None,
            control: None,
            pid: None,
            handle: None,
            outcome: None,
        }
    }

    fn status(&self) -> (MetaStatus, String) {
        outcome_status(self.outcome.as_ref())
    }

    fn exit_code(&self) -> Option<i32> {
        match self.outcome {
            Some(Outcome::Exited(exit) | Outcome::OomKilled(exit)) => Some(exit.code()),
            _ => None,
        }
    }
}

/// A container's status and `meta.message` from how it ended.
fn outcome_status(outcome: Option<&Outcome>) -> (MetaStatus, String) {
    match outcome {
        Some(Outcome::Exited(exit)) => (MetaStatus::Complete, exit.describe()),
        // As Kubernetes' OOMKilled: a failure, whatever the exit code.
        Some(Outcome::OomKilled(_)) => (MetaStatus::Error, OOM_KILLED.to_string()),
        Some(Outcome::Failed(why)) => (MetaStatus::Error, format!("could not start: {why}")),
        Some(Outcome::NotStarted(why)) => (MetaStatus::Error, format!("not started: {why}")),
        None => (MetaStatus::Unknown, "no result".to_string()),
    }
}

/// Everything one cell holds, for its own teardown.
struct CellRun {
    inner: Arc<Inner>,
    reservation: Reservation,
    name: String,
    dir: PathBuf,
    containers: Vec<ContainerRun>,
    network: NetworkRequest,
    /// The cell's limits in force.
    limits: Limits,
    torn_down: bool,
}

/// The cell task: runs the cell and always tears it down.
pub(crate) async fn run(
    inner: Arc<Inner>,
    reservation: Reservation,
    req: CellRequest,
    pulled: Vec<PulledImage>,
) -> Result<CellResult, CellError> {
    let dir = inner.cell_dir(&req.name);
    let containers = req
        .containers
        .iter()
        .zip(pulled)
        .map(|(c, image)| ContainerRun::new(&dir, &c.name, c.limits, image))
        .collect();
    let mut cell = CellRun {
        inner,
        reservation,
        name: req.name,
        dir,
        containers,
        network: req.network,
        limits: req.limits,
        torn_down: false,
    };
    let result = cell.run().await;
    cell.teardown().await;
    result
}

impl CellRun {
    fn cgroups(&self) -> &CellCgroups {
        &self.inner.cgroups
    }

    fn stopping(&self) -> bool {
        self.reservation.entry.stop.is_cancelled()
    }

    async fn run(&mut self) -> Result<CellResult, CellError> {
        let entry = self.reservation.entry.clone();
        entry.set_phase(Phase::Starting);
        let began = Instant::now();
        self.set_up().await?;
        let set_up = began.elapsed();
        if let Some(failed) = self.create_and_start().await {
            return Ok(self.status(Some(failed), false));
        }
        tracing::info!(
            cell = %self.name,
            containers = self.containers.len(),
            setup_ms = ms(set_up),
            start_ms = ms(began.elapsed() - set_up),
            "cell started"
        );
        if !self.stopping() {
            entry.set_phase(Phase::Running);
        }
        let stopped = self.wait_all().await;
        Ok(self.status(None, stopped))
    }

    /// Directory, namespaces, cgroups and bundles. Blocking work, off the runtime.
    async fn set_up(&mut self) -> Result<(), CellError> {
        let inner = self.inner.clone();
        let name = self.name.clone();
        let dir = self.dir.clone();
        let net = self.network.clone();
        let limits = self.limits;
        let entry = self.reservation.entry.clone();
        let mut containers = std::mem::take(&mut self.containers);
        let (containers, result) = tokio::task::spawn_blocking(move || {
            let result =
                set_up_blocking(&inner, &name, &dir, &mut containers, &net, &limits, &|ip| {
                    entry.set_ip(ip)
                });
            (containers, result)
        })
        .await
        .map_err(|e| CellError::Task(format!("setting the cell up: {e}")))?;
        self.containers = containers;
        result
    }

    /// Creates every container (all at once), then starts them all. Returns the failure
    /// message if one could not be created or started (or the cell was
    /// stopped meanwhile); the others are then never started.
    async fn create_and_start(&mut self) -> Option<String> {
        let entry = self.reservation.entry.clone();
        let within = self.inner.processes.grace().max(MIN_STEP_TIMEOUT);
        if self.stopping() {
            return Some(self.not_started("the cell was stopped before it started"));
        }
        let began = Instant::now();
        let exe = self.inner.processes.exe().to_path_buf();
        let state = self.dir.join("state");
        // Every container at once: each helper runs libcontainer in a process of its own.
        let creates = self
            .containers
            .iter()
            .map(|c| runtime::create(&exe, &c.name, &c.dir, &state, within, None));
        let created = futures::future::join_all(creates).await;
        let mut failure = None;
        // Each created one is supervised, also after a failure, so that teardown stops it.
        for (i, created) in created.into_iter().enumerate() {
            match created.and_then(|created| self.adopt(i, created)) {
                Ok(pid) => {
                    tracing::debug!(cell = %self.name, container = %self.containers[i].name, pid, create_ms = ms(began.elapsed()), "container created");
                    entry.update(i, |v| {
                        v.pid = Some(pid);
                        v.message = "created".to_string();
                    });
                }
                Err(why) => {
                    failure.get_or_insert((i, why));
                }
            }
        }
        if let Some((i, why)) = failure {
            return Some(self.failed(i, why));
        }
        for i in 0..self.containers.len() {
            if self.stopping() {
                return Some(self.not_started("the cell was stopped before it started"));
            }
            let began = Instant::now();
            let Some(control) = self.containers[i].control.as_mut() else {
                continue;
            };
            match control.start(within).await {
                Ok(()) => {
                    let c = &self.containers[i];
                    tracing::info!(cell = %self.name, container = %c.name, pid = ?c.pid, start_ms = ms(began.elapsed()), "container started");
                    entry.update(i, |v| {
                        v.status = MetaStatus::Active;
                        v.message = "running".to_string();
                    });
                }
                Err(why) => return Some(self.failed(i, why)),
            }
        }
        None
    }

    /// Takes over a created container: its output into a log indexed by
    /// the pid (for GetSubProcessStream), and its helper under the process
    /// layer's supervision, stopped with the cell.
    fn adopt(&mut self, i: usize, created: Created) -> Result<i32, String> {
        let Created {
            pid,
            helper,
            control,
            stdout,
            stderr,
        } = created;
        let processes = &self.inner.processes;
        let c = &mut self.containers[i];
        c.control = Some(control);
        c.pid = Some(pid);
        let cgroup = self
            .inner
            .cgroups
            .container(&self.name, &c.name)
            .map_err(|e| chain(&e))?;
        let (_, writer) = open_log(
            processes.logs(),
            Kind::Cell,
            &format!("{}.{}", self.name, c.name),
        )
        .map_err(|e| format!("creating the container's log: {e}"))?;
        let output = OutputLog::start(processes.logs(), pid, writer, stdout, stderr)
            .map_err(|e| format!("reading the container's output: {e}"))?;
        let stop = self.reservation.entry.stop.child_token();
        c.handle = Some(processes.supervise(pid, helper, cgroup, output, stop, None));
        Ok(pid)
    }

    /// Marks container `i` as failed and every later one as not started.
    fn failed(&mut self, i: usize, why: String) -> String {
        let name = self.containers[i].name.clone();
        tracing::warn!(cell = %self.name, container = %name, error = %why, "container could not start");
        self.containers[i].outcome = Some(Outcome::Failed(why.clone()));
        self.reservation.entry.update(i, |v| {
            v.status = MetaStatus::Error;
            v.message = format!("could not start: {why}");
        });
        let reason = format!("container {name:?} could not start");
        for c in self.containers.iter_mut().filter(|c| c.outcome.is_none()) {
            c.outcome = Some(Outcome::NotStarted(reason.clone()));
        }
        format!("container {name:?} could not start: {why}")
    }

    /// Marks every container without an outcome as not started.
    fn not_started(&mut self, why: &str) -> String {
        for c in self.containers.iter_mut().filter(|c| c.outcome.is_none()) {
            c.outcome = Some(Outcome::NotStarted(why.to_string()));
        }
        why.to_string()
    }

    /// Waits for every container to exit. A stop request (Stop, a dropped
    /// call, shutdown) has reached every container's supervisor at once
    /// through its token. Returns whether the cell was stopped.
    async fn wait_all(&mut self) -> bool {
        let entry = self.reservation.entry.clone();
        let cell = self.name.clone();
        let waits = self.containers.iter_mut().enumerate().filter_map(|(i, c)| {
            let handle = c.handle.take()?;
            let (cell, name, entry) = (cell.clone(), c.name.clone(), entry.clone());
            Some(async move {
                let finished = handle.wait().await;
                if let Ok(f) = &finished {
                    let outcome = ended(f);
                    let (status, message) = outcome_status(Some(&outcome));
                    tracing::info!(cell = %cell, container = %name, pid = f.pid, exit = %f.exit.describe(), %message, "container exited");
                    entry.update(i, |v| {
                        v.status = status;
                        v.message = message;
                        v.exit_code = Some(f.exit.code());
                        v.oom_killed = matches!(outcome, Outcome::OomKilled(_));
                    });
                }
                (i, finished)
            })
        });
        let all = futures::future::join_all(waits);
        tokio::pin!(all);
        let stop = entry.stop.clone();
        let results = tokio::select! {
            results = &mut all => results,
            _ = stop.cancelled() => {
                entry.set_phase(Phase::Stopping);
                tracing::info!(cell = %cell, grace_ms = ms(self.inner.processes.grace()), "stopping the cell");
                all.await
            }
        };
        for (i, finished) in results {
            self.collect(i, finished);
        }
        stop.is_cancelled()
    }

    /// Records how container `i` ended, from its supervisor.
    fn collect(&mut self, i: usize, finished: Result<Finished, ProcessError>) {
        let c = &mut self.containers[i];
        match finished {
            // A container stopped before it ran keeps "not started" or "could not start".
            Ok(f) => {
                c.outcome.get_or_insert(ended(&f));
            }
            Err(e) => {
                tracing::warn!(cell = %self.name, container = %c.name, error = %chain(&e), "waiting for a container");
                c.outcome
                    .get_or_insert(Outcome::Failed(format!("lost track of it: {}", chain(&e))));
            }
        }
    }

    /// The call's answer, from every container's outcome.
    fn status(&self, failure: Option<String>, stopped: bool) -> CellResult {
        let containers = self
            .containers
            .iter()
            .map(|c| {
                let (status, message) = c.status();
                ContainerResult {
                    name: c.name.clone(),
                    message,
                    pid: c.pid,
                    status,
                    exit_code: c.exit_code(),
                    limits: limits::in_force(c.limits, self.limits),
                    oom_killed: matches!(c.outcome, Some(Outcome::OomKilled(_))),
                }
            })
            .collect();
        let summary = self
            .containers
            .iter()
            .map(|c| format!("{} {}", c.name, c.status().1))
            .collect::<Vec<_>>()
            .join(", ");
        let (status, message) = match failure {
            Some(why) => (MetaStatus::Error, why),
            None if stopped => (
                MetaStatus::Complete,
                format!("stopped on request: {summary}"),
            ),
            None => (MetaStatus::Complete, summary),
        };
        CellResult {
            name: self.name.clone(),
            message,
            status,
            containers,
            ip: self.reservation.entry.ip(),
        }
    }

    /// Kills what is left, reaps, drains, then removes every trace.
    async fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        let began = Instant::now();
        let cgroups = self.cgroups().clone();
        let name = self.name.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cgroups.kill(&name)).await {
            tracing::warn!(cell = %self.name, error = %chain(&e), "killing the cell");
        }
        // Every supervisor: told to stop (already done for a normal end),
        // then waited for, bounded: the cgroup kill above ends the helpers.
        let grace = self.inner.processes.grace();
        let mut pending = Vec::new();
        for (i, c) in self.containers.iter_mut().enumerate() {
            if let Some(handle) = c.handle.take() {
                handle.stop();
                pending.push((i, handle));
            }
        }
        let waits = pending.into_iter().map(|(i, handle)| async move {
            let pid = handle.pid();
            (
                i,
                pid,
                tokio::time::timeout(grace + REAP_TIMEOUT, handle.wait()).await,
            )
        });
        for (i, pid, finished) in futures::future::join_all(waits).await {
            match finished {
                Ok(finished) => self.collect(i, finished),
                Err(_) => {
                    tracing::error!(cell = %self.name, container = %self.containers[i].name, pid, "a killed container did not exit")
                }
            }
        }
        for c in &mut self.containers {
            c.control = None;
        }
        let inner = self.inner.clone();
        let name = self.name.clone();
        let dir = self.dir.clone();
        let mut rootfs: Vec<(String, Box<dyn MountedRootfs>)> = self
            .containers
            .iter_mut()
            .filter_map(|c| c.rootfs.take().map(|r| (c.name.clone(), r)))
            .collect();
        let removed =
            tokio::task::spawn_blocking(move || remove_blocking(&inner, &name, &dir, &mut rootfs))
                .await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(cell = %self.name, error = %chain(&e), "tearing the cell down; clean_leftovers will retry")
            }
            Err(e) => tracing::error!(cell = %self.name, error = %e, "tearing the cell down"),
        }
        self.torn_down = true;
        tracing::debug!(cell = %self.name, teardown_ms = ms(began.elapsed()), "cell torn down");
    }
}

impl Drop for CellRun {
    /// Only reached without a teardown when the task panicked: do the
    /// blocking part so nothing stays mounted, running or in the cgroup tree.
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        tracing::error!(cell = %self.name, "cell task ended without its teardown: cleaning up");
        let mut rootfs: Vec<(String, Box<dyn MountedRootfs>)> = self
            .containers
            .iter_mut()
            .filter_map(|c| c.rootfs.take().map(|r| (c.name.clone(), r)))
            .collect();
        let _ = self.inner.cgroups.kill(&self.name);
        if let Err(e) = remove_blocking(&self.inner, &self.name, &self.dir, &mut rootfs) {
            tracing::error!(cell = %self.name, error = %chain(&e), "tearing the cell down");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The blocking part of setting a cell up: the sandbox (directory,
/// namespaces, network) and every container's bundle and cgroup.
pub(super) fn set_up_blocking(
    inner: &Inner,
    name: &str,
    dir: &Path,
    containers: &mut [ContainerRun],
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

    for c in containers.iter_mut() {
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
        c.rootfs = Some(rootfs);
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

/// Unmounts the root filesystems and everything else under the cell's
/// directory, removes the directory, then the cgroups.
fn remove_blocking(
    inner: &Inner,
    name: &str,
    dir: &Path,
    rootfs: &mut [(String, Box<dyn MountedRootfs>)],
) -> Result<(), CellError> {
    for (container, r) in rootfs.iter_mut() {
        if let Err(e) = r.unmount() {
            tracing::warn!(cell = name, container = %container, error = %e, "unmounting a root filesystem");
        }
    }
    network::disconnect(inner, name);
    let namespaces = sandbox::NamespacePaths::under(&dir.join("ns"));
    sandbox::release(&namespaces);
    let result = inner.reclaim(name);
    if result.is_ok() {
        tracing::debug!(cell = name, "cell removed");
    }
    result
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
                },
                ContainerRequest {
                    name: "b".into(),
                    image: "scratch-ish".into(),
                    limits: Limits::default(),
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

    #[test]
    fn outcomes_read_as_status_and_message() {
        assert_eq!(
            outcome_status(Some(&Outcome::Exited(ExitKind::Code(3)))),
            (MetaStatus::Complete, "exited with code 3".to_string())
        );
        assert_eq!(
            outcome_status(Some(&Outcome::Exited(ExitKind::Signal(9)))),
            (
                MetaStatus::Complete,
                "killed by signal 9 (SIGKILL)".to_string()
            )
        );
        assert_eq!(
            outcome_status(Some(&Outcome::Failed("no such file".into()))),
            (
                MetaStatus::Error,
                "could not start: no such file".to_string()
            )
        );
        assert_eq!(
            outcome_status(Some(&Outcome::NotStarted(
                "container \"b\" could not start".into()
            )))
            .0,
            MetaStatus::Error
        );
        assert_eq!(outcome_status(None).0, MetaStatus::Unknown);
        assert_eq!(
            outcome_status(Some(&Outcome::OomKilled(ExitKind::Signal(9)))),
            (MetaStatus::Error, "OOM killed".to_string())
        );
    }
}
