//! The daemon's memory: its peak during a 1 GiB output flood that a
//! subscriber never reads, against its idle RSS; and its RSS after many runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurae_proto::observe::LogChannelType;
use aurae_proto::runtime::Executable;

use crate::daemon::BenchDaemon;
use crate::exec::run_concurrently;
use crate::report::Row;

/// Peak VmRSS (sampled every 5 ms) while `head -c BYTES /dev/zero` floods
/// stdout, with one subscriber that never reads.
pub async fn flood(d: &BenchDaemon, bytes: u64) -> anyhow::Result<Vec<Row>> {
    let idle = d.rss_kib()?;
    let peak = Arc::new(AtomicU64::new(idle.0));
    let done = Arc::new(AtomicBool::new(false));
    let pid = d.pid();
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok((rss, _)) = crate::daemon::rss_kib_of(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let client = d.client().await?;
    let (trigger, command) =
        crate::stream::gated(d, "flood-go", &format!("head -c {bytes} /dev/zero"));
    let mut core = client.core();
    let t = Instant::now();
    let run = tokio::spawn(async move {
        core.run_executable(Executable {
            command,
            ..Default::default()
        })
        .await
    });
    let shell = crate::stream::find_shell(d).await?;
    // Subscribed, never read: the daemon must not hold the flood for it.
    let idle_subscriber = client
        .sub_process_stream(i64::from(shell), LogChannelType::ChannelStdout)
        .await?;
    std::fs::write(&trigger, b"")?;
    let reply = run.await??.into_inner();
    let took = t.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    drop(idle_subscriber);
    anyhow::ensure!(reply.exit_code == "0", "the flood failed: {}", reply.stderr);
    let mib = |k: u64| k as f64 / 1024.0;
    let peak = peak.load(Ordering::Relaxed);
    Ok(vec![Row {
        what: format!(
            "auraed peak RSS during a {} MiB stdout flood (one subscriber that never reads; {:.1} s; reply {} MiB) vs idle",
            bytes >> 20,
            took.as_secs_f64(),
            reply.stdout.len() >> 20
        ),
        value: format!(
            "{:.1} MiB ({:+.1} MiB over idle)",
            mib(peak),
            mib(peak.saturating_sub(idle.0))
        ),
        baseline: Some(format!("{:.1} MiB idle", mib(idle.0))),
        ratio: None,
    }])
}

/// RSS after `runs` RunExecutable calls of /bin/true (16 in flight).
pub async fn after_runs(d: &BenchDaemon, runs: usize) -> anyhow::Result<Vec<Row>> {
    let before = d.rss_kib()?;
    run_concurrently(d, 16, runs).await?;
    // Let the runs' logs finish and memory be returned.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = d.rss_kib()?;
    Ok(vec![
        Row::rss("auraed RSS before the many runs", before),
        Row::rss(&format!("auraed RSS after {runs} more runs"), after),
    ])
}
