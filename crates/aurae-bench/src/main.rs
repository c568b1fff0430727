//! Benchmarks auraed against baselines measured side by side in the same run:
//! every figure is printed with its baseline and the ratio between them.
//!
//! Usage: `cargo build --release -p auraed -p aurae-bench && sudo target/release/aurae-bench`

mod cells;
mod daemon;
mod exec;
mod instances;
mod memory;
mod report;
mod stream;
mod vms;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "auraed benchmarks with side-by-side baselines")]
struct Args {
    /// The auraed binary to measure (default: next to this binary).
    #[arg(long)]
    auraed: Option<PathBuf>,
    /// Sequential runs for the latency figures.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Calls in flight for the throughput figure.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Total runs for the throughput figure.
    #[arg(long, default_value_t = 4000)]
    throughput_runs: usize,
    /// Lines for the output stream figure (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    lines: usize,
    /// Bytes of the stdout flood for the peak RSS figure (0 skips it).
    #[arg(long, default_value_t = 1 << 30)]
    flood_bytes: u64,
    /// Runs before the "RSS after many runs" figure (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    rss_runs: usize,
    /// RunCell runs of each kind (0 skips the cell figures; they need the test
    /// registry, skopeo, umoci, runc, crun, unshare and the CNI plugins).
    #[arg(long, default_value_t = 50)]
    cell_runs: usize,
    /// VM boots, each side (0 skips the VM figures; they need QEMU, python3
    /// and the disk of hack/build-vm-disk.sh).
    #[arg(long, default_value_t = 3)]
    vm_runs: usize,
    /// The bootable disk for the VM figures.
    #[arg(long, default_value = "/var/cache/aurae-test/vm/disk.qcow2")]
    vm_disk: PathBuf,
    /// Spawns, and raw QEMU boots of the same image (0 skips the instance
    /// figures; they need QEMU and the image of hack/build-instance-image.sh).
    #[arg(long, default_value_t = 3)]
    instance_runs: usize,
    /// The daemon's log level (`AURAED_LOG`): its default, `info`, writes
    /// the audit trail (two lines per run).
    #[arg(long, default_value = "info")]
    daemon_log: String,
    /// The instance image directory.
    #[arg(long, default_value = "/var/lib/aurae/instance")]
    instance_image: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let auraed = match args.auraed {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("auraed"),
    };
    let d = daemon::BenchDaemon::start(&auraed, &args.instance_image, &args.daemon_log).await?;
    let mut rows = Vec::new();
    rows.push(report::Row::rss("auraed idle RSS at start", d.rss_kib()?));
    rows.extend(exec::latency(&d, args.runs).await?);
    rows.extend(exec::throughput(&d, args.in_flight, args.throughput_runs).await?);
    if args.lines > 0 {
        rows.extend(stream::lines(&d, args.lines).await?);
    }
    if args.flood_bytes > 0 {
        rows.extend(memory::flood(&d, args.flood_bytes).await?);
    }
    if args.rss_runs > 0 {
        rows.extend(memory::after_runs(&d, args.rss_runs).await?);
    }
    if args.cell_runs > 0 {
        rows.extend(cells::run_cells(&d, args.cell_runs).await?);
    }
    if args.vm_runs > 0 {
        rows.extend(vms::boot(&d, &args.vm_disk, args.vm_runs).await?);
    }
    if args.instance_runs > 0 {
        rows.extend(instances::spawn(&d, &args.instance_image, args.instance_runs).await?);
    }
    rows.push(report::Row::rss(
        "auraed idle RSS after the runs",
        d.rss_kib()?,
    ));
    report::print(&rows);
    Ok(())
}
