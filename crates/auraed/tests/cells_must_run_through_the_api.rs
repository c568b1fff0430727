//! RunCell, cells.Cells/List and Stop through a real daemon over gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// common/ and cells_support/ both include the registry fixture by path.
#![allow(clippy::duplicate_mod)]

mod cells_support;
mod common;

use aurae_proto::meta::Status;
use aurae_proto::observe::LogChannelType;
use cells_support::{cell, push_derived, ImageSpec};
use common::{eventually, require_registry, TestDaemon};
use tokio_stream::StreamExt;

#[tokio::test]
async fn run_cell_must_report_each_container_and_stream_its_output() {
    if !require_registry("run_cell_must_report_each_container_and_stream_its_output") {
        return;
    }
    let hello = push_derived(
        "api-hello",
        "v1",
        &ImageSpec::sh("echo hello from $(hostname); exit 4"),
    )
    .await;
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let status = c
        .run_cell(cell("api-cell", &[("hello", &hello)]))
        .await
        .expect("RunCell");
    assert_eq!(status.status, Status::Complete as i32, "{status:?}");
    let one = &status.container_statuses[0];
    assert_eq!(
        one.meta.as_ref().map(|m| m.message.as_str()),
        Some("exited with code 4")
    );
    let pid = one.proc.as_ref().expect("pid").pid;
    let mut out = c
        .sub_process_stream(i64::from(pid), LogChannelType::ChannelStdout)
        .await
        .expect("stream");
    let line = out.next().await.expect("a line").expect("ok").line;
    assert_eq!(line, "hello from api-cell");
    assert!(
        out.next().await.is_none(),
        "the stream ends with the container"
    );
}

#[tokio::test]
async fn cells_must_be_listed_and_stopped_by_name() {
    if !require_registry("cells_must_be_listed_and_stopped_by_name") {
        return;
    }
    let sleeper = push_derived(
        "api-sleeper",
        "v1",
        &ImageSpec::sh("echo up; exec sleep 1000"),
    )
    .await;
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let runner = c.clone();
    let run = tokio::spawn(async move {
        runner
            .run_cell(cell("api-long", &[("sleeper", &sleeper)]))
            .await
    });
    // Listed as soon as it exists; the pid comes once the container started.
    let listed = || async {
        c.list_cells().await.map(|l| {
            l.cells.iter().any(|x| {
                x.meta.as_ref().is_some_and(|m| m.name == "api-long")
                    && x.containers
                        .iter()
                        .all(|k| k.proc.as_ref().is_some_and(|p| p.pid > 0))
            })
        })
    };
    let mut seen = false;
    for _ in 0..200 {
        if listed().await.unwrap_or(false) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "the running cell is listed");
    let list = c.list_cells().await.expect("list");
    let running = list
        .cells
        .iter()
        .find(|x| x.meta.as_ref().is_some_and(|m| m.name == "api-long"))
        .expect("cell");
    let pid = running.containers[0].proc.as_ref().expect("pid").pid;
    assert!(
        eventually(10, || common::alive(pid)).await,
        "container pid {pid} is a live process"
    );

    let again = c
        .run_cell(cell("api-long", &[("x", cells_support::BUSYBOX)]))
        .await
        .expect_err("name in use");
    assert_eq!(
        again.status().map(|s| s.code()),
        Some(tonic::Code::AlreadyExists)
    );
    let message = again.status().map(|s| s.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("stop it first (aer cell stop api-long)")),
        "names the aer command: {message:?}"
    );

    c.stop_cell("api-long").await.expect("stop");
    let status = run
        .await
        .expect("join")
        .expect("RunCell returns after Stop");
    assert_eq!(status.container_statuses.len(), 1);
    assert!(
        eventually(10, || !common::alive(pid)).await,
        "container process gone"
    );
    let list = c.list_cells().await.expect("list");
    assert!(list.cells.is_empty(), "{list:?}");
    let unknown = c
        .stop_cell("api-long")
        .await
        .expect_err("no longer running");
    assert_eq!(
        unknown.status().map(|s| s.code()),
        Some(tonic::Code::NotFound)
    );
}
