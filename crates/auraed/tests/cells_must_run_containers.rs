//! RunCell through `auraed::cells::Cells`, as root, against the test
//! registry (hack/registry-up.sh, hack/build-test-images.sh): images always
//! pulled, output by the reported pid, per-container exit codes, shared
//! loopback and hostname, separate files, image user and working directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cells_support;

use std::time::{Duration, Instant};

use aurae_proto::meta::Status as MetaStatus;
use aurae_proto::runtime::CellStatus;
use cells_support::{
    cell, fixture, init_logs, lines, log_complete, push_derived, Harness, ImageSpec,
};

fn container<'a>(status: &'a CellStatus, name: &str) -> &'a aurae_proto::runtime::ContainerStatus {
    status
        .container_statuses
        .iter()
        .find(|c| c.meta.as_ref().is_some_and(|m| m.name == name))
        .unwrap_or_else(|| panic!("no status for container {name}: {status:?}"))
}

fn pid_of(status: &CellStatus, name: &str) -> i32 {
    container(status, name).proc.as_ref().expect("pid").pid
}

fn message_of(status: &CellStatus, name: &str) -> String {
    container(status, name)
        .meta
        .as_ref()
        .unwrap()
        .message
        .clone()
}

#[tokio::test]
async fn cells_must_print_the_expected_output_by_the_reported_pid() {
    if !fixture("cells_must_print_the_expected_output_by_the_reported_pid") {
        return;
    }
    init_logs();
    let image = push_derived(
        "echo",
        "v1",
        &ImageSpec::sh("echo hello from $HOSTNAME; echo to stderr >&2; echo \"path=$PATH\""),
    )
    .await;
    let h = Harness::new("output");
    let status = h
        .cells
        .run(cell("hello", &[("greeter", &image)]))
        .await
        .expect("run");
    assert_eq!(status.status, MetaStatus::Complete as i32, "{status:?}");
    assert_eq!(message_of(&status, "greeter"), "exited with code 0");
    assert_eq!(
        container(&status, "greeter").status,
        MetaStatus::Complete as i32
    );
    let pid = pid_of(&status, "greeter");
    assert!(pid > 0);
    assert_eq!(
        lines(&h.logs, pid, false),
        [
            "hello from hello",
            "path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );
    assert_eq!(lines(&h.logs, pid, true), ["to stderr"]);
    assert!(log_complete(&h.logs, pid), "the output ended");
    assert!(h.traces("hello").is_empty(), "{:?}", h.traces("hello"));
    assert!(h.cells.list().is_empty());
}

#[tokio::test]
async fn cells_must_report_exit_codes_per_container() {
    if !fixture("cells_must_report_exit_codes_per_container") {
        return;
    }
    let ok = push_derived("exit", "zero", &ImageSpec::sh("exit 0")).await;
    let three = push_derived("exit", "three", &ImageSpec::sh("exit 3")).await;
    // The init of a PID namespace cannot be signalled from inside it: deaths by
    // signal are covered by the stop test.
    let failed = push_derived(
        "exit",
        "false",
        &ImageSpec {
            cmd: vec!["false".into()],
            ..Default::default()
        },
    )
    .await;
    let h = Harness::new("exits");
    let status = h
        .cells
        .run(cell(
            "exits",
            &[("ok", &ok), ("three", &three), ("false", &failed)],
        ))
        .await
        .expect("run");
    assert_eq!(status.status, MetaStatus::Complete as i32, "{status:?}");
    assert_eq!(message_of(&status, "ok"), "exited with code 0");
    assert_eq!(message_of(&status, "three"), "exited with code 3");
    assert_eq!(message_of(&status, "false"), "exited with code 1");
    let pids: Vec<i32> = ["ok", "three", "false"]
        .iter()
        .map(|n| pid_of(&status, n))
        .collect();
    assert!(pids[0] != pids[1] && pids[1] != pids[2], "{pids:?}");
    let summary = status.meta.as_ref().unwrap().message.clone();
    assert!(summary.contains("three exited with code 3"), "{summary}");
    assert!(h.traces("exits").is_empty(), "{:?}", h.traces("exits"));
}

#[tokio::test]
async fn cells_must_share_loopback_and_hostname_but_not_files() {
    if !fixture("cells_must_share_loopback_and_hostname_but_not_files") {
        return;
    }
    let server = push_derived(
        "pair",
        "server",
        // nc's stdin is a FIFO this shell holds open: with /dev/null the
        // server half-closes at once, and a client that sees that EOF
        // before it sends exits 0 without sending (busybox nc), which under
        // load lost the ping about one run in six.
        &ImageSpec::sh(
            "echo server-secret > /tmp/only-in-server; echo host=$(hostname); \
             mkfifo /tmp/in; nc -l -p 8080 < /tmp/in & exec 3>/tmp/in; wait $!",
        ),
    )
    .await;
    let client = push_derived(
        "pair",
        "client",
        &ImageSpec::sh(
            "echo host=$(hostname); \
             if [ -e /tmp/only-in-server ]; then echo sees-server-files; else echo own-files; fi; \
             i=0; while [ $i -lt 100 ]; do \
               if echo ping-over-loopback | nc 127.0.0.1 8080; then exit 0; fi; \
               sleep 0.1; i=$((i+1)); \
             done; exit 1",
        ),
    )
    .await;
    let h = Harness::new("pair");
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        h.cells
            .run(cell("pair", &[("server", &server), ("client", &client)])),
    )
    .await
    .expect("the pair finished")
    .expect("run");
    assert_eq!(
        message_of(&status, "client"),
        "exited with code 0",
        "{status:?}"
    );
    assert_eq!(
        message_of(&status, "server"),
        "exited with code 0",
        "{status:?}"
    );
    let server_out = lines(&h.logs, pid_of(&status, "server"), false);
    let client_out = lines(&h.logs, pid_of(&status, "client"), false);
    assert_eq!(server_out, ["host=pair", "ping-over-loopback"]);
    assert_eq!(client_out, ["host=pair", "own-files"]);
    assert!(h.traces("pair").is_empty(), "{:?}", h.traces("pair"));
}

#[tokio::test]
async fn cells_must_run_the_images_user_and_working_dir() {
    if !fixture("cells_must_run_the_images_user_and_working_dir") {
        return;
    }
    let image = push_derived(
        "user",
        "v1",
        &ImageSpec {
            entrypoint: Some(vec!["sh", "-c"]),
            cmd: vec!["echo $(id -u):$(id -g) $(pwd) $GREETING".into()],
            env: vec!["GREETING=hi"],
            user: Some("1234:5678"),
            working_dir: Some("/tmp"),
        },
    )
    .await;
    let h = Harness::new("user");
    let status = h
        .cells
        .run(cell("user", &[("who", &image)]))
        .await
        .expect("run");
    assert_eq!(
        message_of(&status, "who"),
        "exited with code 0",
        "{status:?}"
    );
    assert_eq!(
        lines(&h.logs, pid_of(&status, "who"), false),
        ["1234:5678 /tmp hi"]
    );
}

#[tokio::test]
async fn cells_must_run_the_asked_command_env_and_working_dir_over_the_images() {
    if !fixture("cells_must_run_the_asked_command_env_and_working_dir_over_the_images") {
        return;
    }
    let image = push_derived(
        "override",
        "v1",
        &ImageSpec {
            entrypoint: Some(vec!["sh", "-c"]),
            cmd: vec!["echo image-cmd $MODE".into()],
            env: vec!["GREETING=hi", "MODE=image"],
            working_dir: Some("/tmp"),
            ..Default::default()
        },
    )
    .await;
    let h = Harness::new("override");
    let mut asked = cell(
        "override",
        &[("args", &image), ("command", &image), ("image", &image)],
    );
    // `args` replace the image's Cmd under its Entrypoint (`sh -c`).
    let c = &mut asked.containers[0];
    c.args = vec!["echo $GREETING $MODE $(pwd) $EXTRA".into()];
    c.env = vec!["MODE=asked".into(), "EXTRA=1".into()];
    c.working_dir = "/etc".into();
    // A `command` without `args` runs without the image's Cmd: `$0` is
    // `sh`, not the image's "echo image-cmd $MODE".
    let c = &mut asked.containers[1];
    c.command = vec!["sh".into(), "-c".into(), "echo $# $0 $(pwd); exit 7".into()];
    let status = h.cells.run(asked).await.expect("run");
    assert_eq!(
        message_of(&status, "args"),
        "exited with code 0",
        "{status:?}"
    );
    assert_eq!(
        lines(&h.logs, pid_of(&status, "args"), false),
        ["hi asked /etc 1"]
    );
    assert_eq!(message_of(&status, "command"), "exited with code 7");
    assert_eq!(
        lines(&h.logs, pid_of(&status, "command"), false),
        ["0 sh /tmp"]
    );
    assert_eq!(
        lines(&h.logs, pid_of(&status, "image"), false),
        ["image-cmd image"],
        "a container without overrides runs its image as it says"
    );

    let mut bad = cell("override-bad", &[("app", &image)]);
    bad.containers[0].env = vec!["NOEQUALS".into()];
    let err = h.cells.run(bad).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("\"app\"") && err.message().contains("KEY=value"),
        "{}",
        err.message()
    );
    let mut bad = cell("override-bad", &[("app", &image)]);
    bad.containers[0].working_dir = "relative".into();
    let err = h.cells.run(bad).await.expect_err("refused");
    assert!(err.message().contains("absolute"), "{}", err.message());
    assert!(h.cells.list().is_empty(), "nothing was created");
}

#[tokio::test]
async fn cells_must_pull_a_tag_again_on_every_run() {
    if !fixture("cells_must_pull_a_tag_again_on_every_run") {
        return;
    }
    let h = Harness::new("repull");
    let image = push_derived("repull", "latest", &ImageSpec::sh("echo first")).await;
    let first = h
        .cells
        .run(cell("repull", &[("c", &image)]))
        .await
        .expect("first run");
    assert_eq!(lines(&h.logs, pid_of(&first, "c"), false), ["first"]);
    let again = push_derived("repull", "latest", &ImageSpec::sh("echo second")).await;
    assert_eq!(again, image);
    let second = h
        .cells
        .run(cell("repull", &[("c", &image)]))
        .await
        .expect("second run");
    assert_eq!(lines(&h.logs, pid_of(&second, "c"), false), ["second"]);
}

#[tokio::test]
async fn cells_must_refuse_bad_requests_and_images_before_running_anything() {
    if !fixture("cells_must_refuse_bad_requests_and_images_before_running_anything") {
        return;
    }
    let h = Harness::new("refuse");
    let busybox = cells_support::BUSYBOX;
    let cases: Vec<(aurae_proto::runtime::Cell, tonic::Code, &str)> = vec![
        (
            cell("bad/name", &[("a", busybox)]),
            tonic::Code::InvalidArgument,
            "cell meta.name",
        ),
        (
            cell("c", &[]),
            tonic::Code::InvalidArgument,
            "no containers",
        ),
        (
            cell("c", &[("a", busybox), ("a", busybox)]),
            tonic::Code::InvalidArgument,
            "unique",
        ),
        (
            cell("c", &[("a", "")]),
            tonic::Code::InvalidArgument,
            "no image",
        ),
        (
            cell(
                "c",
                &[
                    ("a", busybox),
                    ("b", "127.0.0.1:5000/aurae/does-not-exist:latest"),
                ],
            ),
            tonic::Code::NotFound,
            "container \"b\"",
        ),
        (
            cell("c", &[("a", "127.0.0.1:5999/aurae/busybox:latest")]),
            tonic::Code::Unavailable,
            "127.0.0.1:5999",
        ),
    ];
    for (req, code, needle) in cases {
        let err = h.cells.run(req.clone()).await.expect_err("refused");
        assert_eq!(err.code(), code, "{req:?}: {err:?}");
        assert!(err.message().contains(needle), "{needle:?} in {err:?}");
    }
    // An image with nothing to run is refused once pulled, before anything is made.
    let empty = push_derived("refuse", "nothing", &ImageSpec::default()).await;
    let err = h
        .cells
        .run(cell("c", &[("a", &empty)]))
        .await
        .expect_err("nothing to run");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("nothing to run"), "{err:?}");
    assert!(h.traces("c").is_empty(), "{:?}", h.traces("c"));
    assert!(h.cells.list().is_empty());
}

#[tokio::test]
async fn cells_must_report_a_container_that_cannot_start() {
    if !fixture("cells_must_report_a_container_that_cannot_start") {
        return;
    }
    let (good, bad) = cells_support::nostart_images().await;
    let h = Harness::new("nostart");
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        h.cells
            .run(cell("nostart", &[("good", &good), ("bad", &bad)])),
    )
    .await
    .expect("no hang")
    .expect("run");
    assert_eq!(status.status, MetaStatus::Error as i32, "{status:?}");
    let bad_status = container(&status, "bad");
    assert_eq!(bad_status.status, MetaStatus::Error as i32);
    let why = message_of(&status, "bad");
    // Each cause once: no layer of the error chain repeats another.
    for part in why.split(": ") {
        assert_eq!(why.matches(part).count(), 1, "{part:?} repeats in {why}");
    }
    assert!(why.starts_with("could not start"), "{why}");
    assert!(why.contains("/no/such/program"), "{why}");
    assert_eq!(container(&status, "good").status, MetaStatus::Error as i32);
    assert!(
        message_of(&status, "good").starts_with("not started"),
        "{status:?}"
    );
    assert!(h.traces("nostart").is_empty(), "{:?}", h.traces("nostart"));
}

#[tokio::test]
async fn cells_must_refuse_a_name_already_running_and_list_and_stop_it() {
    if !fixture("cells_must_refuse_a_name_already_running_and_list_and_stop_it") {
        return;
    }
    let sleeper = push_derived("busy", "v1", &ImageSpec::sh("sleep 1000")).await;
    let h = Harness::with_grace("busy", Duration::from_millis(300));
    let cells = h.cells.clone();
    let req = cell("busy", &[("a", &sleeper), ("b", &sleeper)]);
    let first = tokio::spawn({
        let req = req.clone();
        async move { cells.run(req).await }
    });
    assert!(
        cells_support::eventually(30, || {
            h.cells.list().iter().any(|c| {
                // "running" once every container started and the record says so.
                c.meta.as_ref().is_some_and(|m| m.message == "running")
                    && c.containers.len() == 2
                    && c.containers
                        .iter()
                        .all(|s| s.status == MetaStatus::Active as i32)
            })
        })
        .await,
        "the cell runs: {:?}",
        h.cells.list()
    );
    let listed = h.cells.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].meta.as_ref().unwrap().name, "busy");
    assert!(listed[0]
        .containers
        .iter()
        .all(|c| c.proc.as_ref().is_some_and(|p| p.pid > 0)));

    let err = h.cells.run(req).await.expect_err("name taken");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    // A RunCell cell has a record of its own, bound to the call, while it runs.
    let records = h.records();
    let record = records.get("busy").expect("the running cell's record");
    assert_eq!(record["bound"], true, "{record}");
    assert_eq!(record["state"], "running", "{record}");
    assert_eq!(record["containers"].as_array().map(Vec::len), Some(2));

    let began = Instant::now();
    let meta = h.cells.stop("busy").await.expect("stop");
    assert_eq!(meta.name, "busy");
    assert!(began.elapsed() < Duration::from_secs(10));
    let status = first.await.expect("join").expect("run");
    assert_eq!(status.status, MetaStatus::Complete as i32, "{status:?}");
    assert!(
        status
            .meta
            .as_ref()
            .unwrap()
            .message
            .starts_with("stopped on request"),
        "{status:?}"
    );
    // sh as pid 1 of its namespace ignores SIGTERM: the grace period ends in SIGKILL.
    assert_eq!(message_of(&status, "a"), "killed by signal 9 (SIGKILL)");
    assert!(h.traces("busy").is_empty(), "{:?}", h.traces("busy"));
    assert!(h.records().is_empty(), "no record once the call answered");
    let err = h.cells.stop("busy").await.expect_err("gone");
    assert_eq!(err.code(), tonic::Code::NotFound);
}

/// The start time of one busybox `true` container, for docs/benchmarks.md:
/// the whole RunCell (tag resolved at the registry, layers cached, set-up,
/// create, start, wait, teardown) and, in the log, create and start alone.
#[tokio::test]
async fn cells_must_start_a_true_container_quickly() {
    if !fixture("cells_must_start_a_true_container_quickly") {
        return;
    }
    init_logs();
    let image = push_derived(
        "true",
        "v1",
        &ImageSpec {
            cmd: vec!["true".into()],
            ..Default::default()
        },
    )
    .await;
    let h = Harness::new("true");
    // The first run fetches and unpacks the layer.
    h.cells
        .run(cell("warm", &[("t", &image)]))
        .await
        .expect("warm-up");
    let mut times = Vec::new();
    for i in 0..10 {
        let began = Instant::now();
        let status = h
            .cells
            .run(cell(&format!("true-{i}"), &[("t", &image)]))
            .await
            .expect("run");
        times.push(began.elapsed());
        assert_eq!(message_of(&status, "t"), "exited with code 0");
    }
    times.sort();
    eprintln!(
        "RunCell of one busybox `true` container (pull with cached layers, set-up, create, start, wait, teardown): min {:.1} ms, median {:.1} ms, max {:.1} ms over {} runs",
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
    assert!(times[times.len() / 2] < Duration::from_secs(5));
}
