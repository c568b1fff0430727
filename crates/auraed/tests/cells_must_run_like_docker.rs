//! What `docker run`/`compose up`/`exec` users expect of cells, through a
//! real daemon: `aer cell run` shows the containers' output live (prefixed
//! when several) and exits with the failing container's code, a second
//! Ctrl-C leaves at once, and cells.Cells/Exec (and `aer cell exec`) runs a
//! command inside a running container's filesystem and namespaces.
//!
//! The aer binary is taken from the same target directory as auraed's
//! (`cargo test --workspace` builds it; alone: `cargo build -p aer`).

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::duplicate_mod)]

mod cells_support;
mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aurae_proto::cells::ExecRequest;
use cells_support::{cell, push_derived, ImageSpec};
use common::aer::{aer, running_pid};
use common::{require_registry, TestDaemon};

fn exec_req(cell: &str, container: &str, command: &str) -> ExecRequest {
    ExecRequest {
        cell: cell.into(),
        container: container.into(),
        command: command.into(),
        timeout_seconds: 0,
    }
}

#[tokio::test]
async fn aer_cell_run_must_show_output_live_and_leave_on_a_second_ctrl_c() {
    if !require_registry("aer_cell_run_must_show_output_live_and_leave_on_a_second_ctrl_c") {
        return;
    }
    let sleeper = push_derived(
        "live-sleeper",
        "v1",
        &ImageSpec::sh("echo up and running; exec sleep 1000"),
    )
    .await;
    // A long grace: leaving at once must not wait for it.
    let d = TestDaemon::builder().stop_grace(30.0).start().await;
    let c = d.client().await;
    let image = format!("sleeper={sleeper}");
    let mut child = aer(&d, &["cell", "run", "live", &image])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aer");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a line while the cell runs");
    assert_eq!(line, "up and running", "one container: no prefix");
    // Seen while RunCell is in flight: the cell is still running.
    running_pid(&c, "live", "sleeper").await;

    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("first SIGINT");
    std::thread::sleep(Duration::from_millis(500));
    let second = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("second SIGINT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "aer did not leave on the second Ctrl-C (the grace period is 30s)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(second.elapsed() < Duration::from_secs(10));
    assert!(stderr.contains("Ctrl-C again to leave at once"), "{stderr}");
    // The cell still stops, on the node.
    let _ = c.stop_cell("live").await;
}

#[tokio::test]
async fn aer_cell_run_must_prefix_each_container_and_exit_with_the_failing_code() {
    if !require_registry("aer_cell_run_must_prefix_each_container_and_exit_with_the_failing_code") {
        return;
    }
    let ok = push_derived("prefix-ok", "v1", &ImageSpec::sh("echo one from web")).await;
    let bad = push_derived(
        "prefix-bad",
        "v1",
        &ImageSpec::sh("sleep 0.3; echo two from db; echo trouble >&2; exit 3"),
    )
    .await;
    let d = TestDaemon::start().await;
    let (web, db) = (format!("web={ok}"), format!("db={bad}"));
    let out = aer(&d, &["cell", "run", "pair", &web, &db])
        .output()
        .expect("aer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"web | one from web"), "{stdout}");
    assert!(lines.contains(&"db  | two from db"), "{stdout}");
    assert!(stderr.lines().any(|l| l == "db  | trouble"), "{stderr}");
    assert!(
        stderr.contains("container db exited with code 3"),
        "{stderr}"
    );

    let single = push_derived("prefix-exit", "v1", &ImageSpec::sh("exit 4")).await;
    let out = aer(&d, &["cell", "run", "one", &single])
        .output()
        .expect("aer");
    assert_eq!(out.status.code(), Some(4));
}

#[tokio::test]
async fn exec_must_run_inside_the_container_and_be_refused_when_it_is_not_running() {
    if !require_registry("exec_must_run_inside_the_container_and_be_refused_when_it_is_not_running")
    {
        return;
    }
    let sleeper = push_derived(
        "exec-sleeper",
        "v2",
        &ImageSpec {
            user: Some("65534"),
            working_dir: Some("/etc"),
            env: vec!["GREETING=hello"],
            ..ImageSpec::sh("echo ready; exec sleep 1000")
        },
    )
    .await;
    let quick = push_derived("exec-quick", "v1", &ImageSpec::sh("echo done")).await;
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let runner = c.clone();
    let (s, q) = (sleeper.clone(), quick.clone());
    let run = tokio::spawn(async move {
        runner
            .run_cell(cell("box", &[("main", &s), ("quick", &q)]))
            .await
    });
    let init = running_pid(&c, "box", "main").await;

    let r = c
        .exec_in_cell(exec_req("box", "main", "cat /etc/hostname"))
        .await
        .expect("exec");
    assert_eq!((r.exit_code, r.stdout.as_str()), (0, "box\n"), "{r:?}");
    // The whole output is in the log store, under the helper's pid.
    let pid = r.proc.expect("pid").pid;
    let mut stream = c
        .sub_process_stream(
            i64::from(pid),
            aurae_proto::observe::LogChannelType::ChannelStdout,
        )
        .await
        .expect("stream");
    let line = tokio_stream::StreamExt::next(&mut stream)
        .await
        .expect("a line")
        .expect("ok");
    assert_eq!(line.line, "box");
    // As the container's user, in its working directory, with its environment.
    let r = c
        .exec_in_cell(exec_req(
            "box",
            "main",
            "sh -c 'id -u; pwd; echo $GREETING'",
        ))
        .await
        .expect("exec");
    assert_eq!(r.stdout, "65534\n/etc\nhello\n", "{r:?}");
    let r = c
        .exec_in_cell(exec_req("box", "main", "sh -c 'echo oops >&2; exit 7'"))
        .await
        .expect("exec");
    assert_eq!((r.exit_code, r.stderr.as_str()), (7, "oops\n"));

    // The container's pid namespace: its init is 1, the daemon is not there.
    let r = c
        .exec_in_cell(exec_req("box", "main", "ls /proc"))
        .await
        .expect("exec");
    let procs: Vec<i64> = r
        .stdout
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(procs.contains(&1), "{procs:?}");
    let daemon = i64::from(d.pid().expect("daemon pid"));
    assert!(!procs.contains(&daemon), "{procs:?}");
    assert!(procs.len() < 10, "a host-sized /proc: {procs:?}");
    for ns in ["net", "mnt", "pid", "ipc", "uts"] {
        let theirs = std::fs::read_link(format!("/proc/{init}/ns/{ns}")).expect("readlink");
        let r = c
            .exec_in_cell(exec_req(
                "box",
                "main",
                &format!("busybox readlink /proc/self/ns/{ns}"),
            ))
            .await
            .expect("exec");
        assert_eq!(r.stdout.trim(), theirs.to_string_lossy(), "{ns}: {r:?}");
    }

    // In the container's cgroups, in every hierarchy: as its init.
    let r = c
        .exec_in_cell(exec_req(
            "box",
            "main",
            "sh -c 'cat /proc/1/cgroup; echo --; cat /proc/self/cgroup'",
        ))
        .await
        .expect("exec");
    let (theirs, ours) = r.stdout.split_once("--\n").expect("two parts");
    // The container has a cgroup namespace rooted at its own cgroup: a
    // process elsewhere would see a path such as "/../..".
    assert!(theirs.lines().all(|l| l.ends_with(":/")), "{theirs}");
    assert_eq!(theirs, ours);

    // A timeout kills the command.
    let began = Instant::now();
    let mut slow = exec_req("box", "main", "sleep 100");
    slow.timeout_seconds = 1;
    let r = c.exec_in_cell(slow).await.expect("exec");
    assert!(r.timed_out, "{r:?}");
    assert_eq!(r.exit_code, 137);
    assert!(began.elapsed() < Duration::from_secs(30));

    // Through aer: the output and the command's code.
    let out = aer(
        &d,
        &[
            "cell",
            "exec",
            "box",
            "main",
            "--",
            "sh",
            "-c",
            "echo hi; exit 5",
        ],
    )
    .output()
    .expect("aer");
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    // aer cell ps lists both containers with their pids.
    let out = aer(&d, &["cell", "ps"]).output().expect("aer");
    let ps = String::from_utf8_lossy(&out.stdout);
    assert!(ps.contains(&format!("main  pid {init}")), "{ps}");
    // aer cell logs: the output of each, prefixed.
    let out = aer(&d, &["cell", "logs", "box"]).output().expect("aer");
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.lines().any(|l| l == "main  | ready"), "{logs}");

    // The quick container has exited: refused, and said why.
    let mut exited = false;
    for _ in 0..100 {
        let e = c.exec_in_cell(exec_req("box", "quick", "true")).await;
        if let Err(e) = e {
            let s = e.status().expect("status");
            assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");
            assert!(s.message().contains("is not running"), "{s:?}");
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited, "exec into an exited container was never refused");
    let e = c
        .exec_in_cell(exec_req("box", "nope", "true"))
        .await
        .expect_err("no such container");
    assert_eq!(e.status().map(|s| s.code()), Some(tonic::Code::NotFound));

    c.stop_cell("box").await.expect("stop");
    run.await.expect("join").expect("RunCell");
    let e = c
        .exec_in_cell(exec_req("box", "main", "true"))
        .await
        .expect_err("the cell has stopped");
    assert_eq!(e.status().map(|s| s.code()), Some(tonic::Code::NotFound));
}
