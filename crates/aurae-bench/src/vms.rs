//! RunVirtualMachine of the test disk (URL re-resolved, image cached) until
//! STATUS_ACTIVE and until the console marker, against the plain
//! `qemu-system-x86_64` command on an overlay of the same image reading its
//! serial console to the same marker; and what the daemon adds in memory per
//! running VM (the daemon's RSS growth, and the VM's monitor process).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::observe::LogChannelType;
use aurae_proto::runtime::VirtualMachine;
use aurae_proto::vms::VmRef;

use crate::daemon::{rss_kib_of, BenchDaemon};
use crate::report::{percentile, Row};

const MARKER: &str = "AURAE-VM-READY";
const MEMORY_MIB: u32 = 256;
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// Serves the disk's directory on loopback (python3's http.server sends
/// Last-Modified and answers If-Modified-Since with 304).
struct Server(std::process::Child, u16);

impl Server {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting python3 -m http.server")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(Instant::now() < deadline, "the HTTP server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self(child, port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Plain QEMU, as auraed runs it, on a fresh overlay: time to the marker.
fn raw_qemu(disk: &Path, dir: &Path, i: usize) -> anyhow::Result<Duration> {
    let overlay = dir.join(format!("raw-{i}.qcow2"));
    let t = Instant::now();
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(disk)
        .arg(&overlay)
        .output()?;
    ensure!(out.status.success(), "qemu-img create: {out:?}");
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "q35",
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args([
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
        ])
        .args([
            "-netdev",
            "user,id=net0",
            "-device",
            "virtio-net-pci,netdev=net0,romfile=",
        ])
        .args(["-m", &MEMORY_MIB.to_string(), "-smp", "1", "-drive"])
        .arg(format!(
            "file={},if=virtio,format=qcow2,cache=writeback",
            overlay.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let seen = until_line(&mut child, t, |l| l.contains(MARKER));
    let _ = std::fs::remove_file(&overlay);
    seen?.context("plain qemu never printed the marker")
}

/// Time from `t` until `child` prints a line on stdout that `wanted`
/// accepts (None when it ends first, or after the boot limit); the child
/// is killed either way.
pub fn until_line(
    child: &mut std::process::Child,
    t: Instant,
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<Option<Duration>> {
    let stdout = child.stdout.take().context("qemu stdout")?;
    let mut seen = None;
    for line in BufReader::new(stdout).lines() {
        if wanted(&line?) {
            seen = Some(t.elapsed());
            break;
        }
        if t.elapsed() > BOOT_LIMIT {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(seen)
}

/// `(VmRSS, RssAnon)` of the monitor (parent) of process `pid`.
pub fn monitor_rss_of(pid: i32) -> anyhow::Result<(u64, u64)> {
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))?
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
        .context("the monitor's pid")?;
    rss_kib_of(ppid)
}

pub async fn boot(d: &BenchDaemon, disk: &Path, runs: usize) -> anyhow::Result<Vec<Row>> {
    let dir = disk.parent().context("the disk has no directory")?;
    let file = disk.file_name().context("the disk has no name")?;
    let server = Server::start(dir)?;
    let url = format!("http://127.0.0.1:{}/{}", server.1, file.to_string_lossy());
    let client = d.client().await?;
    let (mut active, mut marker, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let (mut added, mut monitor) = (Vec::new(), Vec::new());
    // Warm-up: the first run downloads the image into the cache.
    for i in 0..=runs {
        let name = format!("bench-vm-{i}");
        let before = d.rss_kib()?.0;
        let t = Instant::now();
        let status = client
            .core()
            .run_virtual_machine(VirtualMachine {
                meta: Some(AuraeMeta {
                    name: name.clone(),
                    message: String::new(),
                }),
                image: url.clone(),
                memory_mib: MEMORY_MIB,
                vcpus: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        let to_active = t.elapsed();
        ensure!(
            status.status == Status::Active as i32,
            "RunVirtualMachine: {status:?}"
        );
        let pid = status.proc.map(|p| p.pid).context("no pid")?;
        let mut stream = client
            .sub_process_output(i64::from(pid), LogChannelType::ChannelStdout, false)
            .await?;
        let to_marker = loop {
            match tokio::time::timeout(BOOT_LIMIT, stream.message()).await {
                Ok(Ok(Some(item))) if item.line.contains(MARKER) => break t.elapsed(),
                Ok(Ok(Some(_))) => {}
                other => bail!("the console of {name} ended before the marker: {other:?}"),
            }
        };
        let after = d.rss_kib()?.0;
        let monitor_rss = monitor_rss_of(pid)?;
        client.vms().delete(VmRef { name }).await?;
        let raw = raw_qemu(disk, d.dir.path(), i)?;
        if i == 0 {
            continue;
        }
        active.push(to_active);
        marker.push(to_marker);
        base.push(raw);
        added.push(after.saturating_sub(before));
        monitor.push(monitor_rss);
    }
    active.sort();
    marker.sort();
    base.sort();
    added.sort();
    monitor.sort();
    let p50 = |v: &[Duration]| percentile(v, 0.5);
    let median = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    let monitor_rss = median(&monitor.iter().map(|m| m.0).collect::<Vec<_>>());
    let monitor_anon = median(&monitor.iter().map(|m| m.1).collect::<Vec<_>>());
    Ok(vec![
        Row {
            what: format!("RunVirtualMachine until STATUS_ACTIVE, URL re-resolved (304), TCG, p50 of {runs}"),
            value: format!("{:.0} ms", p50(&active).as_secs_f64() * 1e3),
            baseline: None,
            ratio: None,
        },
        Row {
            what: format!("RunVirtualMachine until the console marker, p50 of {runs} (vs qemu-img create + qemu-system-x86_64 to the same marker)"),
            value: format!("{:.0} ms", p50(&marker).as_secs_f64() * 1e3),
            baseline: Some(format!("{:.0} ms", p50(&base).as_secs_f64() * 1e3)),
            ratio: Some(p50(&marker).as_secs_f64() / p50(&base).as_secs_f64()),
        },
        Row {
            what: "memory auraed adds per running VM (daemon RSS growth; the VM's monitor process)"
                .into(),
            value: format!(
                "daemon +{:.1} MiB; monitor {:.1} MiB RSS ({:.1} MiB anonymous)",
                median(&added) as f64 / 1024.0,
                monitor_rss as f64 / 1024.0,
                monitor_anon as f64 / 1024.0
            ),
            baseline: None,
            ratio: None,
        },
    ])
}
