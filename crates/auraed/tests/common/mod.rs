//! Shared harness for integration tests: a real auraed binary on a temp
//! socket, with temp PKI, a temp state dir and a cgroup root of its own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aurae_client::{AuraeConfig, AuthConfig, Client, SystemConfig};
use auraed::pki::{self, PkiInitOptions};
use tempfile::TempDir;

pub mod aer;
mod registry;
#[allow(unused_imports)]
pub use registry::{require_registry, REGISTRY};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// True when the test may run; otherwise says why it is skipped. On CI (env
/// `CI` set) a missing capability is a failure, never a silent skip.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root, and CI must not skip it");
    }
    eprintln!("skipping {test}: needs root (cgroups, namespaces)");
    false
}

/// True when `missing` is `None`; otherwise says why `test` is skipped,
/// and on CI (env `CI` set) fails: CI never passes a test that did not run.
pub fn require(test: &str, missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: {why}, and CI must not skip it")
        }
        Some(why) => {
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

/// A RunExecutable request named "t" for `command`.
pub fn exe(command: &str) -> aurae_proto::runtime::Executable {
    aurae_proto::runtime::Executable {
        meta: Some(aurae_proto::meta::AuraeMeta {
            name: "t".into(),
            message: String::new(),
        }),
        command: command.into(),
        ..Default::default()
    }
}

pub struct Builder {
    state_dir: Option<PathBuf>,
    policy: Option<String>,
    args: Vec<String>,
    grace: f64,
    ca_key: bool,
}

impl Builder {
    /// Passes `--ca-key` with the key of the daemon's own CA (nested
    /// instances get certificates from it).
    pub fn with_ca_key(mut self) -> Self {
        self.ca_key = true;
        self
    }

    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// An authorization policy (TOML text) for the daemon.
    pub fn policy(mut self, toml: &str) -> Self {
        self.policy = Some(toml.to_string());
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Seconds between SIGTERM and SIGKILL (default 2 in tests).
    pub fn stop_grace(mut self, secs: f64) -> Self {
        self.grace = secs;
        self
    }

    pub async fn start(self) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("auraed-test-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().to_path_buf();
        let opts = PkiInitOptions {
            pki_dir: root.join("pki"),
            client_dir: root.join("client"),
            client_name: "admin".into(),
            config_path: root.join("config"),
            socket: root.join("aurae.sock"),
            force: false,
            validity_days: 30,
        };
        pki::init(&opts).expect("pki init");
        let policy = self.policy.map(|p| {
            let path = root.join("authz.toml");
            std::fs::write(&path, p).expect("write policy");
            path
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut d = TestDaemon {
            socket: root.join("aurae.sock"),
            pki_dir: root.join("pki"),
            config_path: root.join("config"),
            state_dir: self.state_dir.unwrap_or_else(|| root.join("state")),
            cgroup_root: format!("aurae-test-{}-{n}", std::process::id()),
            policy,
            args: self.args,
            grace: self.grace,
            ca_key: self.ca_key,
            child: None,
            log_path: root.join("auraed.log"),
            dir,
        };
        d.spawn().await;
        d
    }
}

pub struct TestDaemon {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub pki_dir: PathBuf,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    cgroup_root: String,
    policy: Option<PathBuf>,
    args: Vec<String>,
    grace: f64,
    ca_key: bool,
    child: Option<Child>,
    log_path: PathBuf,
}

impl TestDaemon {
    pub fn builder() -> Builder {
        Builder {
            state_dir: None,
            policy: None,
            args: Vec::new(),
            grace: 2.0,
            ca_key: false,
        }
    }

    pub async fn start() -> TestDaemon {
        Self::builder().start().await
    }

    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The daemon's stderr so far (tracing output), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_auraed"));
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--ca-crt")
            .arg(self.pki_dir.join("ca.crt"))
            .arg("--server-crt")
            .arg(self.pki_dir.join("_signed.server.crt"))
            .arg("--server-key")
            .arg(self.pki_dir.join("server.key"))
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--runtime-dir")
            .arg(self.dir.path().join("run"))
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .arg("--stop-grace")
            .arg(self.grace.to_string())
            .arg("--name")
            .arg("test-node")
            .args(&self.args)
            .env("AURAED_LOG", "info,auraed=debug")
            // Hermetic: the host's /etc/cni/net.d never decides a test's
            // networking; a test writes its networks here (or passes --cni-conf-dir).
            .env("AURAED_CNI_CONF_DIR", self.dir.path().join("cni"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        if self.ca_key {
            cmd.arg("--ca-key").arg(self.pki_dir.join("ca.key"));
        }
        match &self.policy {
            Some(p) => {
                cmd.arg("--authz-policy").arg(p);
            }
            // The default path, absent on test machines: every identity is allowed.
            None => {
                cmd.env_remove("AURAED_AUTHZ_POLICY");
            }
        }
        self.child = Some(cmd.spawn().expect("start auraed"));
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("auraed exited during start with {status}:\n{}", self.log());
                }
            }
            if self.socket.exists() {
                if let Ok(c) = self.client_result().await {
                    if c.status().await.is_ok() {
                        return;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("auraed did not answer within 30s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn config(&self) -> AuraeConfig {
        AuraeConfig::from_path(&self.config_path).expect("client config")
    }

    pub async fn client_result(&self) -> Result<Client, aurae_client::ClientError> {
        Client::connect(&self.config()).await
    }

    /// A client with the admin identity created at start.
    pub async fn client(&self) -> Client {
        self.client_result().await.expect("connect")
    }

    /// A client whose certificate (from the daemon's CA) names `identity`.
    pub async fn client_as(&self, identity: &str) -> Client {
        let out = self.dir.path().join(format!("client-{identity}"));
        let files = match pki::issue_client(&self.pki_dir, &out, identity, 1) {
            Ok(f) => f,
            Err(_) => pki::ClientFiles {
                ca_crt: out.join("ca.crt"),
                client_crt: out.join(pki::client_crt_file(identity)),
                client_key: out.join(pki::client_key_file(identity)),
            },
        };
        let cfg = AuraeConfig {
            auth: AuthConfig {
                ca_crt: files.ca_crt,
                client_crt: files.client_crt,
                client_key: files.client_key,
            },
            system: SystemConfig {
                socket: Some(self.socket.display().to_string()),
                ..Default::default()
            },
        };
        Client::connect(&cfg).await.expect("connect as identity")
    }

    /// SIGKILL, as a crash: nothing is cleaned up by the daemon.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit: the graceful path.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        c.wait().ok()
    }

    /// Starts the daemon again with the same state, PKI and socket.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn().await;
    }

    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&self.cgroup_root))
            .filter(|p| p.exists())
            .collect()
    }
}

/// Where cgroup hierarchies are mounted on this host (v2: one; v1: one per controller).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    ["pids", "cpu", "cpuacct", "memory", "freezer"]
        .iter()
        .map(|c| root.join(c))
        .filter(|p| p.is_dir())
        .collect()
}

/// Every pid in a cgroup directory tree.
pub fn pids_under(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(pids_under(&e.path()));
            }
        }
    }
    out
}

/// Removes a test cgroup tree (deepest first) after killing what is in it.
fn remove_cgroup_tree(dir: &Path) {
    for pid in pids_under(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
        for d in self.cgroup_dirs() {
            remove_cgroup_tree(&d);
        }
    }
}

/// Pids whose command line contains `needle`.
pub fn pids_with(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

/// Whether a process is alive (not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Polls `f` every 20 ms until it is true or `secs` pass.
pub async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// A channel over the daemon's Unix socket with a TLS setup of the test's
/// choosing (no client certificate, a foreign CA, ...).
pub async fn uds_channel(
    socket: &Path,
    tls: tonic::transport::ClientTlsConfig,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let socket = socket.clone();
        async move {
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                tokio::net::UnixStream::connect(socket).await?,
            ))
        }
    });
    tonic::transport::Endpoint::from_static("https://server.unsafe.aurae.io")
        .tls_config(tls)?
        .connect_with_connector(connector)
        .await
}

/// The pids of the RunExecutable cgroups under this daemon's root.
pub fn exec_pids(d: &TestDaemon) -> Vec<i32> {
    let mut v: Vec<i32> = d
        .cgroup_dirs()
        .iter()
        .flat_map(|dir| pids_under(&dir.join("exec")))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Names of the transient cgroups under `<root>/exec` in every hierarchy.
pub fn exec_cgroups(d: &TestDaemon) -> Vec<PathBuf> {
    cgroups_under(d, "exec")
}

/// The cgroups directly under `<root>/<sub>` in every hierarchy.
pub fn cgroups_under(d: &TestDaemon, sub: &str) -> Vec<PathBuf> {
    d.cgroup_dirs()
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir.join(sub)).ok())
        .flat_map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()))
        .collect()
}
