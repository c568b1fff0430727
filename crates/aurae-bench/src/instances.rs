//! runtime.Core/Spawn until the nested auraed answers its mTLS health
//! check, against plain QEMU booting the same kernel and initramfs (the
//! image's, without the per-instance archive) to init's first console line;
//! and what the parent adds in memory per instance (its RSS growth, and
//! the instance's monitor process).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aurae_proto::runtime::SpawnRequest;

use crate::daemon::BenchDaemon;
use crate::report::{percentile, Row};
use crate::vms::{monitor_rss_of, until_line};

const MEMORY_MIB: u32 = 512;

/// What PID 1 prints first (crates/auraed/src/init): everything before is
/// QEMU, the kernel and the initramfs unpacking, which any init pays.
const INIT_FIRST_LINE: &str = "auraed-init: starting";

/// Plain QEMU with the instance argv (no network): time to init's first
/// line on the serial console.
fn raw_qemu(image: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-M", "pc", "-accel", "tcg", "-nodefaults"])
        .args(["-no-user-config", "-nographic", "-no-reboot", "-cpu", "max"])
        .args(["-m", &MEMORY_MIB.to_string(), "-smp", "1", "-kernel"])
        .arg(image.join("vmlinux"))
        .arg("-initrd")
        .arg(image.join("initramfs.cpio"))
        .args(["-append", "console=ttyS0 reboot=t panic=-1 quiet"])
        .args(["-serial", "stdio"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    until_line(&mut child, t, |l| l.contains(INIT_FIRST_LINE))?
        .context("plain qemu never printed init's first line")
}

pub async fn spawn(d: &BenchDaemon, image: &Path, runs: usize) -> anyhow::Result<Vec<Row>> {
    let client = d.client().await?;
    let (mut answered, mut base, mut added, mut monitor) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Warm-up: the first run makes the bridge and pages the image in.
    for i in 0..=runs {
        let name = format!("bench-{i}");
        let before = d.rss_kib()?.0;
        let t = Instant::now();
        let r = client
            .spawn(SpawnRequest {
                name: name.clone(),
                memory_mib: MEMORY_MIB,
                vcpus: 1,
            })
            .await?;
        let to_answer = t.elapsed();
        let after = d.rss_kib()?.0;
        let pid = r.proc.map(|p| p.pid).context("no pid")?;
        let monitor_rss = monitor_rss_of(pid)?;
        client.free_instance(&name).await?;
        let raw = raw_qemu(image)?;
        if i == 0 {
            continue;
        }
        answered.push(to_answer);
        base.push(raw);
        added.push(after.saturating_sub(before));
        monitor.push(monitor_rss.0);
    }
    ensure!(!answered.is_empty(), "no runs");
    answered.sort();
    base.sort();
    added.sort();
    monitor.sort();
    let p50 = |v: &[Duration]| percentile(v, 0.5);
    let median = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    Ok(vec![
        Row {
            what: format!("Spawn until the nested auraed answers over mTLS, TCG, p50 of {runs} (vs qemu-system-x86_64 of the same kernel + initramfs to init's first console line)"),
            value: format!("{:.0} ms", p50(&answered).as_secs_f64() * 1e3),
            baseline: Some(format!("{:.0} ms", p50(&base).as_secs_f64() * 1e3)),
            ratio: Some(p50(&answered).as_secs_f64() / p50(&base).as_secs_f64()),
        },
        Row {
            what: format!("parent auraed RSS added per running instance, median of {runs} (+ its monitor process)"),
            value: format!("{} KiB (+ {} KiB)", median(&added), median(&monitor)),
            baseline: None,
            ratio: None,
        },
    ])
}
