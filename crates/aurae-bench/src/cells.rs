//! RunCell of a busybox container (tag re-resolved, layers cached) against
//! `runc run` and `crun run` of a bundle of the same image (made with
//! skopeo + umoci), with the cell's CNI networking off (`network: "none"`)
//! and on (a bridge network of its own), interleaved in one run; and two
//! cells started at once against the same two one after the other, which
//! shows whether anything serialises cell creation.
//!
//! crun refuses this host's hybrid cgroup layout ("cgroups in hybrid mode
//! not supported"); it runs in a private mount namespace without the
//! hybrid `unified` cgroup2 mount, as the issue measured.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aurae_client::Client;
use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::runtime::{Cell, Container};

use crate::daemon::BenchDaemon;
use crate::report::{percentile, Row};

/// The test image of hack/build-test-images.sh: its command is `sh`, which
/// exits at once on an empty stdin.
const IMAGE: &str = "127.0.0.1:5000/aurae/busybox:latest";

/// The bench's own CNI network, apart from the default `aurae0`/10.91.0.0/16.
const BRIDGE: &str = "aurbench0";
const SUBNET: &str = "10.199.0.0/16";

/// `network`: "none" (loopback only) or "" (the CNI network of the conf dir).
fn cell(name: String, network: &str) -> Cell {
    let meta = |name: String| {
        Some(AuraeMeta {
            name,
            message: String::new(),
        })
    };
    Cell {
        meta: meta(name),
        containers: vec![Container {
            meta: meta("c".into()),
            image: IMAGE.into(),
            limits: None,
            ..Default::default()
        }],
        network: network.into(),
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

/// An OCI bundle of IMAGE for runc and crun, with no terminal.
fn bundle(dir: &Path) -> anyhow::Result<PathBuf> {
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

/// The daemon's network: a bridge with host-local addresses, as the
/// default of `auraed --bootstrap`, on a bridge and subnet of its own.
fn write_network(dir: &Path) -> anyhow::Result<()> {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "aurae-bench",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": SUBNET }]],
                "routes": [{ "dst": "0.0.0.0/0" }]
            }
        }]
    });
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("10-bench.conflist"),
        serde_json::to_vec_pretty(&conf)?,
    )?;
    Ok(())
}

/// Runs `cell` to its end; checks it ran, with an address exactly when networked.
async fn run_cell(client: &Client, cell: Cell) -> anyhow::Result<Duration> {
    let networked = cell.network != "none";
    let t = Instant::now();
    let status = client.run_cell(cell).await?;
    let took = t.elapsed();
    ensure!(
        status.status == Status::Complete as i32
            && status
                .container_statuses
                .iter()
                .all(|c| c.exit_code == Some(0))
            && status.ip.is_empty() != networked,
        "RunCell: {status:?}"
    );
    Ok(took)
}

fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    run(cmd)?;
    Ok(t.elapsed())
}

/// p50 of each series, sorted in place.
fn p50(v: &mut [Duration]) -> Duration {
    v.sort();
    percentile(v, 0.5)
}

#[derive(Default)]
struct Series {
    none: Vec<Duration>,
    cni: Vec<Duration>,
    runc: Vec<Duration>,
    crun: Vec<Duration>,
    pair_concurrent: Vec<Duration>,
    pair_sequential: Vec<Duration>,
}

pub async fn run_cells(d: &BenchDaemon, runs: usize) -> anyhow::Result<Vec<Row>> {
    write_network(&d.dir.path().join("cni"))?;
    let client = d.client().await?;
    let bundle = bundle(d.dir.path())
        .context("making a runc bundle (needs skopeo, umoci and the test registry)")?;
    let id = |what: &str, i: usize| format!("aurae-bench-{}-{what}-{i}", std::process::id());
    // Warm-up: the first RunCell pulls the layers into the store, the first
    // networked one makes the bridge.
    run_cell(&client, cell("warm".into(), "none")).await?;
    run_cell(&client, cell("warm-net".into(), "")).await?;
    let mut s = Series::default();
    for i in 1..=runs {
        s.none
            .push(run_cell(&client, cell(format!("none-{i}"), "none")).await?);
        s.cni
            .push(run_cell(&client, cell(format!("cni-{i}"), "")).await?);
        s.runc.push(timed(
            Command::new("runc")
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(id("runc", i)),
        )?);
        s.crun.push(timed(
            Command::new("unshare")
                .args(["-m", "sh", "-c"])
                .arg("umount /sys/fs/cgroup/unified && exec crun run --bundle \"$0\" \"$1\"")
                .arg(&bundle)
                .arg(id("crun", i)),
        )?);
        let t = Instant::now();
        let (a, b) = tokio::join!(
            run_cell(&client, cell(format!("pair-a-{i}"), "none")),
            run_cell(&client, cell(format!("pair-b-{i}"), "none")),
        );
        a?;
        b?;
        s.pair_concurrent.push(t.elapsed());
        let t = Instant::now();
        run_cell(&client, cell(format!("seq-a-{i}"), "none")).await?;
        run_cell(&client, cell(format!("seq-b-{i}"), "none")).await?;
        s.pair_sequential.push(t.elapsed());
    }
    // The bridge outlives its cells (the bridge plugin never deletes it).
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    let (none, cni) = (p50(&mut s.none), p50(&mut s.cni));
    let (runc, crun) = (p50(&mut s.runc), p50(&mut s.crun));
    Ok(vec![
        Row::latency(
            "RunCell busybox, network none, p50 (vs runc run)",
            none,
            runc,
        ),
        Row::latency(
            "RunCell busybox, network none, p50 (vs crun run)",
            none,
            crun,
        ),
        Row::latency(
            "RunCell busybox, CNI bridge network, p50 (vs runc run, no network)",
            cni,
            runc,
        ),
        Row::latency(
            "RunCell busybox, CNI bridge network, p50 (vs crun run, no network)",
            cni,
            crun,
        ),
        Row::latency(
            "RunCell busybox, CNI bridge network, p50 (vs RunCell network none)",
            cni,
            none,
        ),
        Row::latency(
            "two RunCells at once, wall time p50 (vs the same two one after the other)",
            p50(&mut s.pair_concurrent),
            p50(&mut s.pair_sequential),
        ),
    ])
}
