//! Issue 8 item 3: a graceful stop (SIGTERM to auraed) sends SIGTERM to
//! every kind of workload at once, is bounded by the stop grace plus a
//! small constant (docs/operations.md), lets an idle daemon exit right
//! after "auraed stopped", and leaves no cgroup directory behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// common/ and cells_support/ both include the registry fixture by path.
#![allow(clippy::duplicate_mod)]

mod cells_support;
mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aurae_proto::meta::AuraeMeta;
use aurae_proto::observe::LogChannelType;
use aurae_proto::runtime::Executable;
use cells_support::{cell, push_derived, ImageSpec};
use common::{alive, eventually, require_registry, TestDaemon};
use tokio_stream::StreamExt;

const GRACE_SECS: u64 = 4;
/// What a stop may take beyond the grace period: killing, a cell's
/// teardown (0.5 s here) and the exit, on a machine busy with other tests
/// (a stop took 4.6 s with a 3 s grace on an idle one). Less than a grace
/// period, so that kinds stopped one after the other (two graces) fail.
const SLACK: Duration = Duration::from_secs(3);

fn executable(name: &str, command: &str) -> Executable {
    Executable {
        meta: Some(AuraeMeta {
            name: name.into(),
            message: String::new(),
        }),
        command: command.into(),
        comment: String::new(),
        ..Default::default()
    }
}

/// Every directory named `root` directly under a cgroup hierarchy.
fn cgroup_dirs_named(root: &str) -> Vec<PathBuf> {
    let mounts = cells_support::hierarchy_dirs();
    mounts
        .iter()
        .map(|h| h.join(root))
        .filter(|d| d.exists())
        .collect()
}

/// Waits for the daemon's exit after its SIGTERM (sent at `began`): the
/// whole stop, and the time from "auraed stopped" to the exit.
fn stop_daemon(
    d: &mut TestDaemon,
    began: Instant,
    stopped_log: &Mutex<Option<Instant>>,
) -> (Duration, Duration) {
    let status = d.stop().expect("the daemon exited");
    let exited = Instant::now();
    assert!(status.success(), "exit status {status}:\n{}", d.log());
    let stopped_at = stopped_log
        .lock()
        .unwrap()
        .expect("\"auraed stopped\" logged");
    (exited - began, exited.saturating_duration_since(stopped_at))
}

/// Watches the daemon's log for `line`; the instant it appeared.
fn watch_log(d: &TestDaemon, line: &'static str) -> Arc<Mutex<Option<Instant>>> {
    let seen = Arc::new(Mutex::new(None));
    let path = d.dir.path().join("auraed.log");
    let out = seen.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::fs::read_to_string(&path).is_ok_and(|l| l.contains(line)) {
                *out.lock().unwrap() = Some(Instant::now());
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_must_stop_every_kind_within_the_grace() {
    if !require_registry("shutdown_must_stop_every_kind_within_the_grace") {
        return;
    }
    // A container that ignores SIGTERM, and one that ends on it.
    let mut images = Vec::new();
    for (tag, script) in [
        ("stubborn", "trap '' TERM; echo up; sleep 1000"),
        ("polite", "trap 'exit 0' TERM; sleep 1000 & wait"),
    ] {
        images.push(push_derived("shutdown", tag, &ImageSpec::sh(script)).await);
    }
    let (stubborn, polite) = (images[0].clone(), images[1].clone());
    let mut d = TestDaemon::builder()
        .stop_grace(GRACE_SECS as f64)
        .start()
        .await;
    let root = d.cgroup_root().to_string();
    let c = d.client().await;

    // A cell with a container that ignores SIGTERM and one that ends on it.
    let runner = c.clone();
    let cell_call = tokio::spawn(async move {
        runner
            .run_cell(cell(
                "shutdown",
                &[("stubborn", &stubborn), ("polite", &polite)],
            ))
            .await
    });
    // Three RunExecutable calls that ignore SIGTERM, one that ends on it.
    let tag = format!("aurae-shutdown-{}", std::process::id());
    let mut calls = Vec::new();
    for n in 0..3 {
        let c = c.clone();
        let command = format!("sh -c 'trap \"\" TERM; sleep 300; echo {tag}-stubborn-{n}'");
        calls.push(tokio::spawn(async move {
            c.run_executable(executable("stubborn", &command)).await
        }));
    }
    let polite_exec = {
        let c = c.clone();
        let command = format!("sh -c 'trap \"exit 0\" TERM; sleep 300 & wait; echo {tag}-polite'");
        tokio::spawn(async move { c.run_executable(executable("polite", &command)).await })
    };

    // Everything is running: the cell's containers have pids, the executables exist.
    let mut container_pids = Vec::new();
    let mut listed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listed && Instant::now() < deadline {
        let list = c.list_cells().await.expect("list");
        let containers: Vec<_> = list
            .cells
            .iter()
            .flat_map(|x| x.containers.iter())
            .collect();
        container_pids = containers
            .iter()
            .filter_map(|k| k.proc.as_ref().map(|p| p.pid))
            .filter(|pid| *pid > 0)
            .collect();
        listed = container_pids.len() == 2
            && containers
                .iter()
                .all(|k| k.meta.as_ref().is_some_and(|m| m.message == "running"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(listed, "the cell runs:\n{}", d.log());
    assert!(
        eventually(30, || common::pids_with(&format!("{tag}-stubborn")).len()
            >= 3
            && !common::pids_with(&format!("{tag}-polite")).is_empty())
        .await,
        "the executables run"
    );
    let polite_pids = common::pids_with(&format!("{tag}-polite"));
    let stopped_log = watch_log(&d, "auraed stopped");

    let pid = nix::unistd::Pid::from_raw(d.pid().unwrap() as i32);
    let began = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // SIGTERM reaches every kind at once: the polite workloads end long before the grace is over.
    let polite_gone = eventually(GRACE_SECS, || polite_pids.iter().all(|p| !alive(*p))).await;
    let polite_ms = began.elapsed().as_millis();
    assert!(
        polite_gone,
        "the polite executable did not end within the grace"
    );
    assert!(
        (polite_ms as u64) < GRACE_SECS * 1000 / 2,
        "the polite executable ended {polite_ms} ms after SIGTERM: it got SIGTERM late"
    );
    let polite_containers = eventually(GRACE_SECS, || {
        container_pids.iter().filter(|p| alive(**p)).count() <= 1
    })
    .await;
    assert!(
        polite_containers,
        "the polite container did not end on SIGTERM"
    );
    let container_ms = began.elapsed().as_millis();
    assert!(
        (container_ms as u64) < GRACE_SECS * 1000 / 2,
        "the polite container ended {container_ms} ms after SIGTERM: it got SIGTERM late"
    );

    let (stop, after_stopped) = stop_daemon(&mut d, began, &stopped_log);
    eprintln!(
        "polite executable gone after {polite_ms} ms, polite container after {container_ms} ms, \
         daemon stopped in {:.2} s (grace {GRACE_SECS} s), exit {} ms after \"auraed stopped\"",
        stop.as_secs_f64(),
        after_stopped.as_millis()
    );
    assert!(
        stop < Duration::from_secs(GRACE_SECS) + SLACK,
        "the stop took {stop:?}: more than the grace ({GRACE_SECS} s) + {SLACK:?}:\n{}",
        d.log()
    );

    // The calls ended with the daemon: every stubborn workload is gone.
    for call in calls {
        let _ = call.await;
    }
    let _ = polite_exec.await;
    let _ = cell_call.await;
    assert!(
        common::pids_with(&format!("{tag}-stubborn")).is_empty(),
        "a stubborn executable survived"
    );
    assert!(
        container_pids.iter().all(|p| !alive(*p)),
        "a container survived"
    );
    let left = cgroup_dirs_named(&root);
    assert!(left.is_empty(), "cgroup directories left: {left:?}");
}

#[tokio::test]
async fn an_idle_daemon_must_exit_right_after_it_stopped() {
    if !common::require_root("an_idle_daemon_must_exit_right_after_it_stopped") {
        return;
    }
    let mut d = TestDaemon::start().await;
    let root = d.cgroup_root().to_string();
    // Served calls, as a daemon in use has: a run, and a stream of its output
    // (log followers and the log watcher start threads of their own).
    let c = d.client().await;
    let ran = c
        .run_executable(executable("idle", "echo hello"))
        .await
        .expect("run");
    let pid = i64::from(ran.proc.expect("proc").pid);
    let mut out = c
        .sub_process_stream(pid, LogChannelType::ChannelStdout)
        .await
        .expect("stream");
    assert_eq!(out.next().await.expect("a line").expect("ok").line, "hello");
    drop(out);
    drop(c);
    let stopped_log = watch_log(&d, "auraed stopped");
    let began = Instant::now();
    let (stop, after) = stop_daemon(&mut d, began, &stopped_log);
    eprintln!(
        "idle stop in {} ms, exit {} ms after \"auraed stopped\"\n{}",
        stop.as_millis(),
        after.as_millis(),
        d.log()
    );
    // Nothing runs: the stop need not wait for the grace period (2 s here), nor
    // for idle connections (grace + 5 s before, with a client connection open).
    assert!(
        stop < Duration::from_secs(1),
        "an idle daemon took {stop:?} to stop:\n{}",
        d.log()
    );
    // The issue measured about 2 s (a runtime drop waiting for parked blocking
    // threads); now a few ms. The bound leaves room for a loaded CI.
    assert!(
        after < Duration::from_millis(500),
        "the process took {after:?} to exit after \"auraed stopped\":\n{}",
        d.log()
    );
    let left = cgroup_dirs_named(&root);
    assert!(left.is_empty(), "cgroup directories left: {left:?}");
}
