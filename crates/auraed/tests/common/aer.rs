//! `aer` as a user runs it against a test daemon, and waiting for a
//! cell's container to run.
//!
//! The aer binary is taken from the same target directory as auraed's
//! (`cargo test --workspace` builds it; alone: `cargo build -p aer`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aurae_client::Client;

use super::TestDaemon;

pub fn aer_path() -> PathBuf {
    let aer = std::path::Path::new(env!("CARGO_BIN_EXE_auraed")).with_file_name("aer");
    assert!(
        aer.exists(),
        "{} is missing: build it first (cargo build -p aer)",
        aer.display()
    );
    aer
}

pub fn aer(d: &TestDaemon, args: &[&str]) -> Command {
    let mut cmd = Command::new(aer_path());
    cmd.arg("--config").arg(&d.config_path).args(args);
    cmd
}

/// Waits until container `container` of cell `name` runs; returns its pid.
pub async fn running_pid(c: &Client, name: &str, container: &str) -> i32 {
    for _ in 0..400 {
        let list = c.list_cells().await.map(|l| l.cells).unwrap_or_default();
        let pid = list
            .iter()
            .filter(|x| x.meta.as_ref().is_some_and(|m| m.name == name))
            .flat_map(|x| x.containers.iter())
            .find(|k| {
                k.meta.as_ref().is_some_and(|m| m.name == container)
                    && k.status == aurae_proto::meta::Status::Active as i32
            })
            .and_then(|k| k.proc.map(|p| p.pid));
        if let Some(pid) = pid {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("container {container} of cell {name} did not start");
}
