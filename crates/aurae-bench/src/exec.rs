//! RunExecutable of /bin/true against a bare spawn+wait of /bin/true.

use std::sync::Arc;
use std::time::Instant;

use aurae_client::{AuraeConfig, Client};
use aurae_proto::runtime::Executable;

use crate::daemon::BenchDaemon;
use crate::report::{percentile, Row};

fn true_exe() -> Executable {
    Executable {
        command: "/bin/true".into(),
        ..Default::default()
    }
}

fn spawn_wait_true() -> anyhow::Result<()> {
    let status = std::process::Command::new("/bin/true").status()?;
    anyhow::ensure!(status.success(), "/bin/true failed");
    Ok(())
}

pub async fn latency(d: &BenchDaemon, runs: usize) -> anyhow::Result<Vec<Row>> {
    // The client runs as `aer` does: one thread, a current-thread runtime,
    // so that the figure is the daemon's and not the bench's thread hops.
    let config = d.config().clone();
    let Samples {
        mut ours,
        mut base,
        mut rpc,
    } = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(measure(config, runs))
    })
    .await??;
    ours.sort();
    base.sort();
    rpc.sort();
    let (ours_p50, base_p50, rpc_p50) = (
        percentile(&ours, 0.5),
        percentile(&base, 0.5),
        percentile(&rpc, 0.5),
    );
    Ok(vec![
        Row::latency(
            "RunExecutable /bin/true p50 (vs spawn+wait)",
            ours_p50,
            base_p50,
        ),
        Row::latency(
            "RunExecutable /bin/true p99 (vs spawn+wait)",
            percentile(&ours, 0.99),
            percentile(&base, 0.99),
        ),
        // What the API's transport alone costs (mTLS, HTTP/2, a call that
        // starts nothing), and what is left of a run without it: the share
        // of the ratio above that the process layer adds.
        Row::latency(
            "Status p50, a call that starts nothing (vs spawn+wait)",
            rpc_p50,
            base_p50,
        ),
        Row::latency(
            "RunExecutable p50 less Status p50 (vs spawn+wait)",
            ours_p50.saturating_sub(rpc_p50),
            base_p50,
        ),
    ])
}

struct Samples {
    ours: Vec<std::time::Duration>,
    base: Vec<std::time::Duration>,
    rpc: Vec<std::time::Duration>,
}

async fn measure(config: AuraeConfig, runs: usize) -> anyhow::Result<Samples> {
    let client = Client::connect(&config).await?;
    // Warm up both paths (page cache, connection, allocator).
    for _ in 0..50 {
        client.run_executable(true_exe()).await?;
        spawn_wait_true()?;
    }
    let mut s = Samples {
        ours: Vec::with_capacity(runs),
        base: Vec::with_capacity(runs),
        rpc: Vec::with_capacity(runs),
    };
    // Interleaved, so that all see the same machine state.
    for _ in 0..runs {
        let t = Instant::now();
        let r = client.run_executable(true_exe()).await?;
        s.ours.push(t.elapsed());
        anyhow::ensure!(r.exit_code == "0", "RunExecutable /bin/true: {r:?}");
        let t = Instant::now();
        spawn_wait_true()?;
        s.base.push(t.elapsed());
        let t = Instant::now();
        client.status().await?;
        s.rpc.push(t.elapsed());
    }
    Ok(s)
}

pub async fn throughput(
    d: &BenchDaemon,
    in_flight: usize,
    total: usize,
) -> anyhow::Result<Vec<Row>> {
    let t = Instant::now();
    run_concurrently(d, in_flight, total).await?;
    let ours = total as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..in_flight)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    spawn_wait_true()?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for th in threads {
        th.join()
            .map_err(|_| anyhow::anyhow!("baseline thread panicked"))??;
    }
    let base = total as f64 / t.elapsed().as_secs_f64();
    let label =
        format!("RunExecutable /bin/true, {in_flight} in flight (vs {in_flight} threads spawning)");
    Ok(vec![Row::rate(&label, "runs/s", ours, base)])
}

/// `total` RunExecutable calls of /bin/true, `in_flight` at a time.
pub async fn run_concurrently(
    d: &BenchDaemon,
    in_flight: usize,
    total: usize,
) -> anyhow::Result<()> {
    let client = d.client().await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let r = client.run_executable(true_exe()).await?;
                anyhow::ensure!(r.exit_code == "0", "RunExecutable /bin/true: {r:?}");
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}
