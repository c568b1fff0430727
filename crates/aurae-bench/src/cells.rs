//! RunCell of a busybox container (tag re-resolved, layers cached) against
//! `runc run` of a bundle of the same image, made with skopeo + umoci.
//! (crun refuses to run on this host's hybrid cgroup layout; runc works.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::runtime::{Cell, Container};

use crate::daemon::BenchDaemon;
use crate::report::{percentile, Row};

/// The test image of hack/build-test-images.sh: its command is `sh`, which
/// exits at once on an empty stdin.
const IMAGE: &str = "127.0.0.1:5000/aurae/busybox:latest";

fn cell(i: usize) -> Cell {
    let meta = |name: String| {
        Some(AuraeMeta {
            name,
            message: String::new(),
        })
    };
    Cell {
        meta: meta(format!("bench-{i}")),
        containers: vec![Container {
            meta: meta("c".into()),
            image: IMAGE.into(),
            limits: None,
        }],
        // Loopback only, as measured before CNI networking existed.
        network: "none".into(),
        ports: Vec::new(),
        limits: None,
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// An OCI bundle of IMAGE for runc, with no terminal.
fn bundle(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let layout = dir.join("oci");
    let bundle = dir.join("bundle");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{IMAGE}"))
        .arg(format!("oci:{}:bench", layout.display())))?;
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:bench", layout.display()))
        .arg(&bundle))?;
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["process"]["terminal"] = serde_json::Value::Bool(false);
    std::fs::write(&path, serde_json::to_vec(&spec)?)?;
    Ok(bundle)
}

pub async fn run_cell(d: &BenchDaemon, runs: usize) -> anyhow::Result<Vec<Row>> {
    let client = d.client().await?;
    let bundle = bundle(d.dir.path())
        .context("making a runc bundle (needs skopeo, umoci and the test registry)")?;
    // Warm-up: the first RunCell pulls the layers into the store.
    client.run_cell(cell(0)).await?;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        let t = Instant::now();
        let status = client.run_cell(cell(i)).await?;
        ours.push(t.elapsed());
        ensure!(
            status.status == Status::Complete as i32,
            "RunCell: {status:?}"
        );
        let t = Instant::now();
        run(Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("aurae-bench-{}-{i}", std::process::id())))?;
        base.push(t.elapsed());
    }
    ours.sort();
    base.sort();
    let p50 = |v: &[Duration]| percentile(v, 0.5);
    Ok(vec![Row::latency(
        "RunCell busybox, tag re-resolved, layers cached, p50 (vs runc run)",
        p50(&ours),
        p50(&base),
    )])
}
