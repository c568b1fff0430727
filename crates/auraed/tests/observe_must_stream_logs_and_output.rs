//! The daemon log stream and the per-process output streams.

mod common;

use std::time::Duration;

use aurae_proto::observe::{LogChannelType, LogItem};
use aurae_proto::runtime::Executable;
use common::{eventually, exec_pids, require_root, TestDaemon};
use tokio_stream::StreamExt;

async fn next_items(
    stream: &mut tonic::Streaming<LogItem>,
    until: impl Fn(&LogItem) -> bool,
) -> Vec<LogItem> {
    let mut items = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(item)) = stream.next().await {
            let done = until(&item);
            items.push(item);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "timed out; got {items:?}");
    items
}

#[tokio::test]
async fn daemon_log_must_reach_every_subscriber() {
    if !require_root("daemon_log_must_reach_every_subscriber") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let mut a = c.daemon_log_stream().await.expect("stream a");
    let mut b = c.daemon_log_stream().await.expect("stream b");
    // Give both subscriptions time to be registered before the record is emitted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c
        .run_executable(Executable {
            command: "echo marker-7f3a".into(),
            ..Default::default()
        })
        .await
        .expect("run");
    let pid = r.proc.expect("proc").pid;
    let needle = format!("pid={pid}");
    let is_start = |i: &LogItem| i.line.contains("workload started") && i.line.contains(&needle);
    let got_a = next_items(&mut a, is_start).await;
    let got_b = next_items(&mut b, is_start).await;
    let last_a = got_a.last().expect("a record");
    let last_b = got_b.last().expect("a record");
    assert_eq!(last_a, last_b, "both subscribers see the same record");
    assert!(last_a.channel.starts_with("INFO auraed"), "{last_a:?}");
    assert!(
        last_a.line.contains("caller="),
        "the audit names the caller: {last_a:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    assert!(
        (now - last_a.timestamp).abs() < 60_000_000_000,
        "timestamp in Unix nanoseconds: {}",
        last_a.timestamp
    );
}

#[tokio::test]
async fn late_subscriber_must_get_buffered_lines_then_the_end() {
    if !require_root("late_subscriber_must_get_buffered_lines_then_the_end") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let r = c
        .run_executable(Executable {
            command: "sh -c 'echo one; echo two; echo err >&2; printf tail'".into(),
            ..Default::default()
        })
        .await
        .expect("run");
    let pid = r.proc.expect("proc").pid;
    let mut out = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .expect("stdout stream");
    let mut lines = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(item) = out.next().await {
            let item = item.expect("item");
            assert_eq!(item.channel, "stdout");
            lines.push(item.line);
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream of an exited process must end");
    assert_eq!(lines, ["one", "two", "tail"]);
    let mut err = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStderr)
        .await
        .expect("stderr stream");
    let first = err.next().await.expect("a line").expect("ok");
    assert_eq!(
        (first.channel.as_str(), first.line.as_str()),
        ("stderr", "err")
    );
    assert!(err.next().await.is_none());
}

#[tokio::test]
async fn live_subscriber_must_see_lines_as_they_come() {
    if !require_root("live_subscriber_must_see_lines_as_they_come") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let trigger = d.dir.path().join("trigger");
    let command = format!(
        "sh -c 'echo before; while [ ! -e {} ]; do sleep 0.05; done; echo after'",
        trigger.display()
    );
    let mut core = c.core();
    let call = tokio::spawn(async move {
        core.run_executable(Executable {
            command,
            ..Default::default()
        })
        .await
    });
    let shell = || {
        exec_pids(&d).into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sh")
        })
    };
    assert!(eventually(10, || shell().is_some()).await);
    let pid = shell().expect("shell pid");
    let mut out = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .expect("stream");
    assert_eq!(out.next().await.expect("line").expect("ok").line, "before");
    std::fs::write(&trigger, b"").expect("trigger");
    assert_eq!(out.next().await.expect("line").expect("ok").line, "after");
    assert!(
        out.next().await.is_none(),
        "the stream ends with the process"
    );
    let r = call.await.expect("join").expect("run").into_inner();
    assert_eq!(r.stdout, "before\nafter\n");
}

#[tokio::test]
async fn unknown_pid_must_be_not_found() {
    if !require_root("unknown_pid_must_be_not_found") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let e = c
        .sub_process_stream(1, LogChannelType::ChannelStdout)
        .await
        .expect_err("pid 1 is not ours");
    assert_eq!(e.status().map(|s| s.code()), Some(tonic::Code::NotFound));
}

#[tokio::test]
async fn status_must_name_the_instance() {
    if !require_root("status_must_name_the_instance") {
        return;
    }
    let d = TestDaemon::start().await;
    let s = d.client().await.status().await.expect("status");
    let meta = s.meta.expect("meta");
    assert_eq!(meta.name, "test-node");
    assert!(
        meta.message
            .starts_with(&format!("auraed {} up ", env!("CARGO_PKG_VERSION"))),
        "{}",
        meta.message
    );
    assert!(
        meta.message.contains("processes running 0"),
        "{}",
        meta.message
    );
}
