//! Issue 8 item 1: a cell start could hang forever when libcontainer's
//! clone in the multi-threaded daemon inherited a lock (malloc's) held by
//! another thread. The reproduction: many cells whose second container
//! cannot start, while RunExecutable calls keep the daemon's other threads
//! busy. Every call must return, and nothing of a cell may stay behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// common/ and cells_support/ both include the registry fixture by path.
#![allow(clippy::duplicate_mod)]

mod cells_support;
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::runtime::Executable;
use cells_support::cell;
use common::{require_registry, TestDaemon};

/// Cell starts in all, spread over `WORKERS` concurrent callers.
const STARTS: usize = 500;
const WORKERS: usize = 4;
/// Concurrent RunExecutable loops.
const EXEC_LOOPS: usize = 3;
/// Far beyond any normal call here (a cell start takes tens of milliseconds).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn executable(n: usize) -> Executable {
    Executable {
        meta: Some(AuraeMeta {
            name: format!("noise-{n}"),
            message: String::new(),
        }),
        // Some output, so the daemon's threads allocate while cells start.
        command: "sh -c 'seq 1 2000'".into(),
        comment: String::new(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cells_must_never_hang_on_a_failing_start() {
    if !require_registry("cells_must_never_hang_on_a_failing_start") {
        return;
    }
    let (good, bad) = cells_support::nostart_images().await;
    let d = TestDaemon::start().await;
    let began = Instant::now();

    let done = Arc::new(AtomicBool::new(false));
    let execs = Arc::new(AtomicUsize::new(0));
    let mut noise = Vec::new();
    for n in 0..EXEC_LOOPS {
        let c = d.client().await;
        let (done, execs) = (done.clone(), execs.clone());
        noise.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let status = tokio::time::timeout(CALL_TIMEOUT, c.run_executable(executable(n)))
                    .await
                    .unwrap_or_else(|_| panic!("RunExecutable hung for {CALL_TIMEOUT:?}"))
                    .expect("RunExecutable");
                assert_eq!(status.exit_code, "0", "{status:?}");
                assert_eq!(status.stdout.lines().count(), 2000);
                execs.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let c = d.client().await;
        let (good, bad) = (good.clone(), bad.clone());
        workers.push(tokio::spawn(async move {
            let name = format!("nostart-{w}");
            for i in 0..STARTS / WORKERS {
                let call = c.run_cell(cell(&name, &[("g", &good), ("b", &bad)]));
                let status = tokio::time::timeout(CALL_TIMEOUT, call)
                    .await
                    .unwrap_or_else(|_| {
                        panic!("cell start {i} of worker {w} hung for {CALL_TIMEOUT:?}")
                    })
                    .expect("RunCell answers");
                assert_eq!(status.status, Status::Error as i32, "{status:?}");
                let message = |n: &str| {
                    status
                        .container_statuses
                        .iter()
                        .find(|s| s.meta.as_ref().is_some_and(|m| m.name == n))
                        .and_then(|s| s.meta.as_ref())
                        .map(|m| m.message.clone())
                        .unwrap_or_default()
                };
                assert!(
                    message("b").starts_with("could not start")
                        && message("b").contains("/no/such/program"),
                    "{status:?}"
                );
                assert!(message("g").starts_with("not started"), "{status:?}");
            }
        }));
    }
    for w in workers {
        w.await.expect("cell worker");
    }
    let cells_done = began.elapsed();
    done.store(true, Ordering::Relaxed);
    for n in noise {
        n.await.expect("RunExecutable loop");
    }
    eprintln!(
        "{STARTS} failing cell starts in {:.1}s with {} RunExecutable calls alongside",
        cells_done.as_secs_f64(),
        execs.load(Ordering::Relaxed)
    );
    assert!(execs.load(Ordering::Relaxed) > 0, "the noise ran");

    // Nothing of any cell is left: no container process, no helper, no cgroup.
    let c = d.client().await;
    assert!(c.list_cells().await.expect("list").cells.is_empty());
    let cells: Vec<_> = d
        .cgroup_dirs()
        .iter()
        .flat_map(|dir| common::pids_under(&dir.join("cells")))
        .collect();
    assert!(
        cells.is_empty(),
        "processes left in cell cgroups: {cells:?}"
    );
    let daemon = d.pid().expect("running") as i32;
    let helpers: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            ppid == Some(daemon)
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|arg| arg == b"container")
        })
        .collect();
    assert!(helpers.is_empty(), "container helpers left: {helpers:?}");
}
