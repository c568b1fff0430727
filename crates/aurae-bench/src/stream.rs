//! GetSubProcessStream throughput against reading the same output from a pipe.

use std::io::BufRead;
use std::time::{Duration, Instant};

use aurae_proto::observe::LogChannelType;
use aurae_proto::runtime::Executable;
use tokio_stream::StreamExt;

use crate::daemon::BenchDaemon;
use crate::report::Row;

pub async fn lines(d: &BenchDaemon, n: usize) -> anyhow::Result<Vec<Row>> {
    let client = d.client().await?;
    let (trigger, command) = gated(d, "stream-go", &format!("seq 1 {n}"));
    let mut core = client.core();
    let run = tokio::spawn(async move {
        core.run_executable(Executable {
            command,
            ..Default::default()
        })
        .await
    });
    let pid = find_shell(d).await?;
    let mut stream = client
        .sub_process_stream(i64::from(pid), LogChannelType::ChannelStdout)
        .await?;
    std::fs::write(&trigger, b"")?;
    let t = Instant::now();
    let mut got = 0usize;
    let mut lost_notes = 0usize;
    while let Some(item) = stream.next().await {
        let item = item?;
        if item.line.starts_with("aurae: this subscriber fell behind") {
            lost_notes += 1;
        } else {
            got += 1;
        }
    }
    let ours = got as f64 / t.elapsed().as_secs_f64();
    run.await??;

    let t = Instant::now();
    let mut child = std::process::Command::new("seq")
        .arg(n.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no pipe"))?;
    let base_lines = std::io::BufReader::new(out).lines().count();
    child.wait()?;
    let base = base_lines as f64 / t.elapsed().as_secs_f64();
    let label = format!(
        "GetSubProcessStream lines/s, one subscriber of seq (vs reading a pipe; {got} lines delivered / {n} produced{})",
        if lost_notes > 0 {
            format!(", {lost_notes} lag notices")
        } else {
            String::new()
        }
    );
    Ok(vec![Row::rate(&label, "lines/s", ours, base)])
}

/// A command that runs `program` once the file `name` exists, so that a
/// subscriber is in place before its first byte: (the file, the command).
pub fn gated(d: &BenchDaemon, name: &str, program: &str) -> (std::path::PathBuf, String) {
    let trigger = d.dir.path().join(name);
    let _ = std::fs::remove_file(&trigger);
    let command = format!(
        "sh -c 'while [ ! -e {} ]; do sleep 0.01; done; exec {program}'",
        trigger.display()
    );
    (trigger, command)
}

/// The pid of the waiting shell: the only `sh` in the daemon's exec cgroups.
pub async fn find_shell(d: &BenchDaemon) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let root = format!("aurae-bench-{}", std::process::id());
    loop {
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if comm.trim() == "sh" && cgroup.contains(&format!("/{root}/exec/")) {
                return Ok(pid);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the benchmark's shell did not appear ({})",
            d.dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
