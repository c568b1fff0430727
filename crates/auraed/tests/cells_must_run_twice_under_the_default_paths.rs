//! Issue 8 item 7: the daemon run as hack/up.sh runs it, with the default
//! `--runtime-dir /var/run/aurae` and `--state-dir /var/lib/aurae`. On
//! Debian /var/run is a symlink to /run and /proc/self/mountinfo names
//! mounts by their real path: a teardown that compared the configured path
//! with mountinfo left the cell directory's self-bind mount, and a second
//! run of the same cell failed with "Device or resource busy".
//!
//! The PKI is a temporary one (passed by flag), so that the test never
//! writes /etc/aurae or ~/.aurae. When another auraed already answers on
//! the default socket (a developer's hack/up.sh), the test cannot share its
//! state and runtime directories: it then uses a socket, directories and a
//! cgroup root of its own, still under /var/run and /var/lib, and says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// common/ and cells_support/ both include the registry fixture by path.
#![allow(clippy::duplicate_mod)]

mod cells_support;
mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aurae_client::{AuraeConfig, Client};
use aurae_proto::meta::Status;
use auraed::pki::{self, PkiInitOptions};
use cells_support::{cell, push_derived, ImageSpec};
use common::require_registry;

const DEFAULT_SOCKET: &str = "/var/run/aurae/aurae.sock";
const DEFAULT_RUNTIME_DIR: &str = "/var/run/aurae";
const DEFAULT_STATE_DIR: &str = "/var/lib/aurae";
const HELLO: &str = "echo hello from $(hostname)";

/// The daemon's paths: the defaults, or dedicated ones when a daemon already runs there.
struct Paths {
    socket: PathBuf,
    runtime_dir: PathBuf,
    state_dir: PathBuf,
    /// Flags beyond the PKI (none when the defaults are free).
    flags: Vec<String>,
}

fn paths() -> Paths {
    let busy = std::os::unix::net::UnixStream::connect(DEFAULT_SOCKET).is_ok();
    if !busy {
        return Paths {
            socket: DEFAULT_SOCKET.into(),
            runtime_dir: DEFAULT_RUNTIME_DIR.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            flags: Vec::new(),
        };
    }
    let id = std::process::id();
    let (runtime_dir, state_dir) = (
        format!("/var/run/aurae-defaults-test-{id}"),
        format!("/var/lib/aurae-defaults-test-{id}"),
    );
    let socket = format!("{runtime_dir}/aurae.sock");
    eprintln!("an auraed answers on {DEFAULT_SOCKET}: using {runtime_dir} and {state_dir} (still through the /var/run symlink)");
    Paths {
        flags: vec![
            "--socket".into(),
            socket.clone(),
            "--runtime-dir".into(),
            runtime_dir.clone(),
            "--state-dir".into(),
            state_dir.clone(),
            "--cgroup-root".into(),
            format!("aurae-defaults-test-{id}"),
        ],
        socket: socket.into(),
        runtime_dir: runtime_dir.into(),
        state_dir: state_dir.into(),
    }
}

/// Mount points at or below `dir` (a real path, as mountinfo shows them).
fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// What a directory held before the test, to remove only what the test made.
struct Before {
    dir: PathBuf,
    existed: bool,
    entries: HashSet<std::ffi::OsString>,
}

impl Before {
    fn take(dir: &Path) -> Self {
        let entries = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        Self {
            dir: dir.to_path_buf(),
            existed: dir.exists(),
            entries,
        }
    }

    fn restore(&self) {
        if !self.existed {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if !self.entries.contains(&e.file_name()) {
                    let p = e.path();
                    let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                }
            }
        }
    }
}

/// The daemon of the test: killed and its traces removed on drop.
struct Daemon {
    child: std::process::Child,
    before: Vec<Before>,
    cells_dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for point in mounts_under(&self.cells_dir).iter().rev() {
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for b in &self.before {
            b.restore();
        }
    }
}

#[tokio::test]
async fn cells_must_run_twice_under_the_default_paths() {
    if !require_registry("cells_must_run_twice_under_the_default_paths") {
        return;
    }
    let image = push_derived("defaults", "v1", &ImageSpec::sh(HELLO)).await;
    let p = paths();
    let pki_dir = tempfile::tempdir().unwrap();
    let opts = PkiInitOptions {
        pki_dir: pki_dir.path().join("pki"),
        client_dir: pki_dir.path().join("client"),
        client_name: "admin".into(),
        config_path: pki_dir.path().join("config"),
        socket: p.socket.clone(),
        force: false,
        validity_days: 1,
    };
    pki::init(&opts).expect("pki init");
    let before = vec![Before::take(&p.state_dir), Before::take(&p.runtime_dir)];
    let log = pki_dir.path().join("auraed.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auraed"));
    // Exactly the flags of hack/up.sh, but for the certificates (and, with
    // a daemon already there, the paths of `paths`).
    for var in [
        "AURAED_SOCKET",
        "AURAED_STATE_DIR",
        "AURAED_RUNTIME_DIR",
        "AURAED_CGROUP_ROOT",
        "AURAED_AUTHZ_POLICY",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--ca-crt")
        .arg(opts.pki_dir.join("ca.crt"))
        .arg("--server-crt")
        .arg(opts.pki_dir.join("_signed.server.crt"))
        .arg("--server-key")
        .arg(opts.pki_dir.join("server.key"))
        .args(&p.flags)
        .env("AURAED_LOG", "info,auraed::cells=debug")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let real_runtime = std::fs::canonicalize(Path::new("/var/run"))
        .unwrap()
        .join(p.runtime_dir.strip_prefix("/var/run").unwrap());
    let mut daemon = Daemon {
        child: cmd.spawn().expect("start auraed"),
        before,
        cells_dir: real_runtime.join("cells"),
    };
    let daemon_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let config = AuraeConfig::from_path(&opts.config_path).expect("client config");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("auraed exited with {status}:\n{}", daemon_log());
        }
        if let Ok(c) = Client::connect(&config).await {
            if c.status().await.is_ok() {
                break c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "auraed did not answer:\n{}",
            daemon_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    for run in 1..=2 {
        let status = client
            .run_cell(cell("demo", &[("hello", &image)]))
            .await
            .unwrap_or_else(|e| panic!("run {run} of the cell: {e}\n{}", daemon_log()));
        assert_eq!(
            status.status,
            Status::Complete as i32,
            "run {run}: {status:?}"
        );
        let message = status.container_statuses[0]
            .meta
            .as_ref()
            .map(|m| m.message.clone());
        assert_eq!(message.as_deref(), Some("exited with code 0"), "run {run}");
        let left = mounts_under(&real_runtime);
        assert!(left.is_empty(), "run {run} left mounts: {left:?}");
        assert!(
            !real_runtime.join("cells/demo").exists(),
            "run {run} left the cell's directory"
        );
    }

    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = daemon.child.wait().expect("wait");
    assert!(
        exit.success(),
        "auraed exited with {exit}:\n{}",
        daemon_log()
    );
    let left = mounts_under(&real_runtime);
    assert!(left.is_empty(), "mounts left after the exit: {left:?}");
    assert!(
        !p.socket.exists(),
        "the socket is removed at exit ({})",
        p.socket.display()
    );
}
