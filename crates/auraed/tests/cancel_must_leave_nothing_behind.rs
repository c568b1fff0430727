//! A RunExecutable whose client gives up (deadline or dropped call) stops the
//! process and everything it started, and removes its cgroup.

mod common;

use std::time::Duration;

use aurae_proto::runtime::Executable;
use common::{eventually, exec_cgroups, exec_pids, require_root, TestDaemon};

#[tokio::test]
async fn cancel_must_leave_nothing_behind() {
    if !require_root("cancel_must_leave_nothing_behind") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    // A shell and two children: all three must go.
    let mut req = tonic::Request::new(Executable {
        command: "sh -c 'sleep 1000 & sleep 1000 & wait'".into(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(1500));
    let mut core = c.core();
    let call = tokio::spawn(async move { core.run_executable(req).await });

    assert!(
        eventually(10, || exec_pids(&d).len() == 3).await,
        "expected sh and two sleeps, saw {:?}",
        exec_pids(&d)
    );
    let pids = exec_pids(&d);
    let result = call.await.expect("join");
    let status = result.expect_err("the call outlived its deadline");
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "unexpected {status:?}"
    );
    assert!(
        eventually(10, || pids.iter().all(|p| !common::alive(*p))).await,
        "processes left: {pids:?}"
    );
    assert!(
        eventually(10, || exec_cgroups(&d).is_empty()).await,
        "cgroups left: {:?}",
        exec_cgroups(&d)
    );
}

#[tokio::test]
async fn dropped_call_must_stop_the_process() {
    if !require_root("dropped_call_must_stop_the_process") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let mut core = c.core();
    let call = tokio::spawn(async move {
        core.run_executable(Executable {
            command: "sleep 1000".into(),
            ..Default::default()
        })
        .await
    });
    assert!(eventually(10, || exec_pids(&d).len() == 1).await);
    let pids = exec_pids(&d);
    call.abort();
    drop(c);
    assert!(
        eventually(10, || pids.iter().all(|p| !common::alive(*p))).await,
        "process left: {pids:?}"
    );
    assert!(
        eventually(10, || exec_cgroups(&d).is_empty()).await,
        "cgroup left"
    );
}
