//! Shared by the cells_must_* tests: the registry fixture, images derived from
//! aurae/busybox with the command a test needs, and a `Cells` of its own per
//! test (temp runtime dir and image store, a cgroup parent named after the
//! test), with checks that nothing of a cell is left behind.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurae_proto::cells::RunningCell;
use aurae_proto::meta::AuraeMeta;
use aurae_proto::runtime::{Cell, CellStatus, Container};
use auraed::cells::Cells;
use auraed::cgroups::{detect_host, CgroupDriver, CgroupPath, HOST_MOUNT_ROOT};
use auraed::images::{ImageStore, RegistryConfig};
use auraed::logs::{read_output, EndMarker, LogLimits, LogStore};
use auraed::process::Processes;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tempfile::TempDir;

pub use registry::REGISTRY;
pub const BUSYBOX: &str = "127.0.0.1:5000/aurae/busybox:latest";

#[path = "../common/registry.rs"]
mod registry;

/// Root and the registry with the test images; without them the test is
/// skipped (with the reason), or fails when CI is set.
pub fn fixture(test: &str) -> bool {
    registry::require_registry(test)
}

/// What to change in busybox's image configuration.
#[derive(Default, Clone)]
pub struct ImageSpec {
    pub entrypoint: Option<Vec<&'static str>>,
    pub cmd: Vec<String>,
    pub env: Vec<&'static str>,
    pub user: Option<&'static str>,
    pub working_dir: Option<&'static str>,
}

impl ImageSpec {
    /// `sh -c script` as the image's command.
    pub fn sh(script: &str) -> Self {
        Self {
            cmd: vec!["sh".into(), "-c".into(), script.to_string()],
            ..Default::default()
        }
    }
}

fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

/// Pushes busybox's layers with a changed configuration as
/// `127.0.0.1:5000/aurae/cells-test-<name>:<tag>`; returns the reference.
pub async fn push_derived(name: &str, tag: &str, spec: &ImageSpec) -> String {
    let c = client();
    let base: Reference = BUSYBOX.parse().unwrap();
    let data = c
        .pull(
            &base,
            &RegistryAuth::Anonymous,
            vec![
                oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE,
                oci_client::manifest::IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
                oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE,
            ],
        )
        .await
        .expect("pull busybox");
    let mut config: serde_json::Value = serde_json::from_slice(&data.config.data).unwrap();
    let run = config
        .as_object_mut()
        .unwrap()
        .entry("config")
        .or_insert_with(|| serde_json::json!({}));
    let run = run.as_object_mut().unwrap();
    if let Some(e) = &spec.entrypoint {
        run.insert("Entrypoint".into(), serde_json::json!(e));
    }
    run.insert("Cmd".into(), serde_json::json!(spec.cmd));
    if !spec.env.is_empty() {
        let mut env: Vec<String> = run
            .get("Env")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        env.extend(spec.env.iter().map(|s| s.to_string()));
        run.insert("Env".into(), serde_json::json!(env));
    }
    if let Some(u) = spec.user {
        run.insert("User".into(), serde_json::json!(u));
    }
    if let Some(w) = spec.working_dir {
        run.insert("WorkingDir".into(), serde_json::json!(w));
    }
    let reference = format!("{REGISTRY}/aurae/cells-test-{name}:{tag}");
    let layers: Vec<ImageLayer> = data
        .layers
        .into_iter()
        .map(|l| ImageLayer::new(l.data.to_vec(), l.media_type, None))
        .collect();
    let config = Config::new(
        serde_json::to_vec(&config).unwrap(),
        oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    c.push(
        &reference.parse().unwrap(),
        &layers,
        config,
        &RegistryAuth::Anonymous,
        None,
    )
    .await
    .expect("push derived image");
    reference
}

/// The images of a cell that cannot start: `good` would sleep, `bad` names
/// a program that does not exist.
pub async fn nostart_images() -> (String, String) {
    let missing = ImageSpec {
        cmd: vec!["/no/such/program".into()],
        ..Default::default()
    };
    let good = push_derived("nostart", "good", &ImageSpec::sh("sleep 1000")).await;
    (good, push_derived("nostart", "bad", &missing).await)
}

/// A `Cells` seen through the API layer (`auraed::api::cells`): wire types
/// in and out, errors as the `tonic::Status` a client gets.
#[derive(Clone)]
pub struct ApiCells(pub Cells);

impl ApiCells {
    pub async fn run(&self, cell: Cell) -> Result<CellStatus, tonic::Status> {
        auraed::api::cells::run_cell(&self.0, cell).await
    }

    pub fn list(&self) -> Vec<RunningCell> {
        auraed::api::cells::list_cells(&self.0)
    }

    pub async fn stop(&self, name: &str) -> Result<AuraeMeta, tonic::Status> {
        auraed::api::cells::stop_cell(&self.0, name).await
    }

    pub async fn shutdown(&self) {
        self.0.shutdown(false).await
    }

    pub fn clean_leftovers(&self) {
        self.0.clean_leftovers()
    }
}

/// A `Cells` of the test's own: cgroups under `aurae-celltest-<pid>-<test>/cells`,
/// bundles under a temp dir, images in a temp store.
pub struct Harness {
    pub cells: ApiCells,
    pub logs: Arc<LogStore>,
    pub driver: Arc<dyn CgroupDriver>,
    pub top: String,
    pub parent: CgroupPath,
    pub runtime: TempDir,
    pub db: Arc<auraed::state::StateDb>,
    _state: TempDir,
}

impl Harness {
    pub fn new(test: &str) -> Self {
        Self::with_grace(test, Duration::from_secs(2))
    }

    pub fn with_grace(test: &str, grace: Duration) -> Self {
        let top = format!("aurae-celltest-{}-{test}", std::process::id());
        let parent = CgroupPath::new(&format!("{top}/cells")).unwrap();
        let runtime = TempDir::new().unwrap();
        let state = TempDir::new().unwrap();
        let images = ImageStore::open(state.path(), RegistryConfig::default()).unwrap();
        let driver = detect_host().unwrap();
        let logs =
            LogStore::open(&state.path().join("logs"), LogLimits::default(), 1 << 30).unwrap();
        // Containers run under `auraed container`: this test binary is not auraed.
        let processes = Processes::new(driver.clone(), logs.clone(), grace)
            .with_monitor_exe(PathBuf::from(env!("CARGO_BIN_EXE_auraed")));
        let db = Arc::new(auraed::state::StateDb::open(&state.path().join("db")).unwrap());
        let cells =
            Cells::new(images, processes, parent.clone(), runtime.path()).with_state(db.clone());
        Self {
            cells: ApiCells(cells),
            logs,
            driver,
            top,
            parent,
            runtime,
            db,
            _state: state,
        }
    }

    /// The cells' records in the state database (`cells.cells.v1`), as JSON.
    pub fn records(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let table = auraed::state::Table::<serde_json::Value>::new("cells.cells.v1");
        self.db.all(&table).unwrap()
    }

    /// `<runtime_dir>/cells/<cell>`.
    pub fn cell_dir(&self, cell: &str) -> PathBuf {
        self.runtime.path().join("cells").join(cell)
    }

    /// Pids in the cell's cgroups.
    pub fn pids(&self, cell: &str) -> Vec<i32> {
        self.driver
            .pids(&self.parent.workload(cell).unwrap())
            .unwrap_or_default()
    }

    /// Every trace of `cell` that is still there: cgroup directories (in any
    /// hierarchy), mounts under its directory, the directory itself.
    pub fn traces(&self, cell: &str) -> Vec<String> {
        let mut left = Vec::new();
        for dir in hierarchy_dirs() {
            let d = dir.join(self.parent.workload(cell).unwrap().as_str());
            if d.exists() {
                left.push(format!("cgroup {}", d.display()));
            }
        }
        let dir = self.cell_dir(cell);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for line in mounts.lines() {
            if let Some(point) = line.split(' ').nth(4) {
                if Path::new(point).starts_with(&dir) {
                    left.push(format!("mount {point}"));
                }
            }
        }
        if dir.exists() {
            left.push(format!("directory {}", dir.display()));
        }
        left
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Whatever a failed test left: kill it, then remove the test's cgroup tree.
        let top = CgroupPath::new(&self.top).unwrap();
        let _ = self.driver.kill_all(&top);
        let _ = self.driver.remove(&top);
        for dir in hierarchy_dirs() {
            remove_dirs(&dir.join(&self.top));
        }
        let cells = self.runtime.path().join("cells");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(&cells))
            .collect();
        points.reverse();
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Every cgroup hierarchy directory under /sys/fs/cgroup (the root itself on v2).
pub fn hierarchy_dirs() -> Vec<PathBuf> {
    let root = Path::new(HOST_MOUNT_ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn remove_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

pub fn cell(name: &str, containers: &[(&str, &str)]) -> Cell {
    Cell {
        meta: Some(AuraeMeta {
            name: name.into(),
            message: String::new(),
        }),
        containers: containers
            .iter()
            .map(|(n, image)| Container {
                meta: Some(AuraeMeta {
                    name: n.to_string(),
                    message: String::new(),
                }),
                image: image.to_string(),
                limits: None,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The lines a process wrote on stdout (or stderr), by its pid, from its log.
pub fn lines(logs: &LogStore, pid: i32, stderr: bool) -> Vec<String> {
    let dir = logs
        .by_pid(pid)
        .unwrap_or_else(|| panic!("no log for pid {pid}"));
    let text = read_output(&dir, 1 << 20).unwrap();
    let text = if stderr { text.stderr } else { text.stdout };
    text.lines().map(str::to_string).collect()
}

/// Whether the log of `pid` is complete (the process ended and its output was drained).
pub fn log_complete(logs: &LogStore, pid: i32) -> bool {
    logs.by_pid(pid)
        .is_some_and(|dir| EndMarker::read(&dir).is_some())
}

pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// Polls `check` every 20 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Log lines (the runtime's timings) on the test's output.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "auraed::cells=info".into()),
        )
        .with_test_writer()
        .try_init();
}
