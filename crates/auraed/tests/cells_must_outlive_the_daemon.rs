//! Detached cells (`aer cell start`, cells.Cells/Start) through a real
//! daemon and the aer binary: a started cell on a CNI network survives a
//! SIGTERM and a kill -9 of the daemon (the restarted daemon adopts the same
//! pids, the output still reaches the log), `aer cell rm` refuses it while
//! it runs, `aer cell stop` stops it and keeps it (PASSIVE, with its exit
//! code, its logs readable), and `aer cell rm` removes every trace: the
//! IPAM reservation, the namespaces and mounts, the cgroups, the bundle
//! directory and the record. A start whose second container fails leaves
//! nothing either, and concurrent Removes of one cell remove it once.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// common/ and cells_support/ both include the registry fixture by path.
#![allow(clippy::duplicate_mod)]

mod cells_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use aurae_client::Client;
use aurae_proto::cells::RunningCell;
use aurae_proto::meta::Status;
use cells_support::{cell, nostart_images, push_derived, ImageSpec};
use common::aer::aer;
use common::{alive, require_registry, TestDaemon};

const IPAM_STORE: &str = "/var/lib/cni/networks";

/// Root, the registry and the CNI plugins (installed by .ci/run).
fn fixture(test: &str) -> bool {
    if !require_registry(test) {
        return false;
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: the CNI plugins are missing, and CI must not skip the test"
        );
        eprintln!("skipping {test}: apt-get install containernetworking-plugins");
        return false;
    }
    true
}

/// A network of the test's own (bridge `aurt-<tag>`, 10.213.<n>.0/24) in
/// the daemon's conf dir.
fn install_network(d: &TestDaemon, tag: &str, n: u8) -> String {
    let name = format!("aurae-t-{tag}");
    let _ = std::fs::remove_dir_all(Path::new(IPAM_STORE).join(&name));
    let conf =
        auraed::cni::bridge_network(&name, &format!("aurt-{tag}"), &format!("10.213.{n}.0/24"));
    let dir = d.dir.path().join("cni");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("10-{name}.conflist")),
        serde_json::to_vec(&conf).unwrap(),
    )
    .unwrap();
    name
}

/// The bridge and the IPAM store a test's network made on the host.
fn remove_bridge(tag: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &format!("aurt-{tag}")])
        .output();
    let _ = std::fs::remove_dir_all(Path::new(IPAM_STORE).join(format!("aurae-t-{tag}")));
}

fn run(d: &TestDaemon, args: &[&str]) -> Output {
    aer(d, args).output().expect("aer")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that `result` failed with `code`.
fn assert_code<T: std::fmt::Debug>(
    result: Result<T, aurae_client::ClientError>,
    code: tonic::Code,
) {
    let err = result.expect_err("refused");
    assert_eq!(err.status().map(|s| s.code()), Some(code), "{err}");
}

async fn listed(c: &Client, name: &str) -> Option<RunningCell> {
    c.list_cells()
        .await
        .expect("list")
        .cells
        .into_iter()
        .find(|x| x.meta.as_ref().is_some_and(|m| m.name == name))
}

/// The pid of the cell's only container, once List shows it running.
async fn running_pid(c: &Client, name: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cell = listed(c, name).await;
        if let Some(cell) = &cell {
            let k = &cell.containers[0];
            if cell.detached
                && cell.status == Status::Active as i32
                && k.status == Status::Active as i32
            {
                return k.proc.expect("pid").pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cell {name} is not shown running: {cell:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ticks `aer cell logs` shows.
fn ticks(d: &TestDaemon, name: &str) -> Vec<String> {
    let out = run(d, &["cell", "logs", name]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("tick "))
        .map(String::from)
        .collect()
}

/// Waits until the log holds more than `n` ticks; returns them.
async fn more_ticks_than(d: &TestDaemon, name: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = ticks(d, name);
        if t.len() > n {
            for (i, line) in t.iter().enumerate() {
                assert_eq!(line, &format!("tick {i}"), "no tick lost: {t:?}");
            }
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "the log stays at {t:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Everything of cell `name` still on the host.
fn traces(d: &TestDaemon, name: &str, network: &str) -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(entries) = std::fs::read_dir(Path::new(IPAM_STORE).join(network)) {
        left.extend(
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                .map(|n| format!("IPAM reservation {n}")),
        );
    }
    let dir: PathBuf = d.dir.path().join("run").join("cells").join(name);
    if dir.exists() {
        left.push(format!("bundle directory {}", dir.display()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(
        mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(&dir))
            .map(|p| format!("mount {p}")),
    );
    for cg in d.cgroup_dirs() {
        let c = cg.join("cells").join(name);
        if c.exists() {
            left.push(format!("cgroup {}", c.display()));
        }
    }
    left
}

/// Asserts that nothing of cell `name` is left on the host.
fn assert_gone(d: &TestDaemon, name: &str, network: &str) {
    let left = traces(d, name, network);
    assert!(left.is_empty(), "{left:#?}\n{}", d.log());
}

#[tokio::test]
async fn a_started_cell_must_survive_daemon_restarts_until_rm() {
    let test = "a_started_cell_must_survive_daemon_restarts_until_rm";
    if !fixture(test) {
        return;
    }
    // As pid 1 of its namespace, sh would ignore SIGTERM without a trap.
    let ticker = ImageSpec::sh(
        "trap 'echo bye; exit 3' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    );
    let image = push_derived("life-ticker", "v1", &ticker).await;
    let mut d = TestDaemon::start().await;
    let network = install_network(&d, "life", 9);

    let out = run(&d, &["cell", "start", "life", &format!("tick={image}")]);
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    let c = d.client().await;
    let pid = running_pid(&c, "life").await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("tick  pid {pid}")),
        "{}",
        text(&out)
    );
    let ip = listed(&c, "life").await.expect("listed").ip;
    assert!(ip.starts_with("10.213.9."), "{ip:?}");
    assert_code(
        c.start_cell(cell("life", &[("tick", &image)])).await,
        tonic::Code::AlreadyExists,
    );
    let mut seen = more_ticks_than(&d, "life", 2).await.len();

    for crash in [false, true] {
        drop(c.clone());
        if crash {
            d.kill9();
        } else {
            assert!(d.stop().expect("exit").success(), "{}", d.log());
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            alive(pid),
            "the container died with the daemon (crash: {crash})"
        );
        d.restart().await;
        let c = d.client().await;
        assert_eq!(
            running_pid(&c, "life").await,
            pid,
            "adopted with the same pid\n{}",
            d.log()
        );
        assert_eq!(listed(&c, "life").await.expect("listed").ip, ip);
        // Written while no daemon ran, and still written now.
        seen = more_ticks_than(&d, "life", seen + 3).await.len();
    }

    // Exec reaches an adopted container (the basis of CRI ExecSync).
    let exec = d
        .client()
        .await
        .exec_in_cell(aurae_proto::cells::ExecRequest {
            cell: "life".into(),
            container: "tick".into(),
            command: "hostname".into(),
            timeout_seconds: 10,
        })
        .await
        .expect("exec");
    assert_eq!(
        (exec.exit_code, exec.stdout.as_str()),
        (0, "life\n"),
        "{exec:?}"
    );

    let out = run(&d, &["cell", "rm", "life"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        text(&out)
    );
    assert!(alive(pid));

    let out = run(&d, &["cell", "stop", "life"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!alive(pid), "stopped");
    let c = d.client().await;
    let stopped = listed(&c, "life")
        .await
        .expect("a stopped cell stays listed");
    assert_eq!(stopped.status, Status::Passive as i32, "{stopped:?}");
    assert_eq!(
        stopped.containers[0].exit_code,
        Some(3),
        "its TERM trap ran: {stopped:?}"
    );
    assert!(
        ticks(&d, "life").len() >= seen,
        "the logs of a stopped cell are readable"
    );
    let out = run(&d, &["cell", "logs", "life"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("bye\n"),
        "{}",
        text(&out)
    );
    let out = run(&d, &["cell", "start", "life", &image]);
    assert!(
        !out.status.success(),
        "the name stays taken until rm: {}",
        text(&out)
    );

    // A stopped cell is kept across a restart too.
    d.restart().await;
    let c = d.client().await;
    let kept = listed(&c, "life").await.expect("kept");
    assert_eq!(kept.status, Status::Passive as i32, "{kept:?}");

    let out = run(&d, &["cell", "rm", "life"]);
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    assert!(listed(&c, "life").await.is_none());
    assert_gone(&d, "life", &network);
    assert_code(c.remove_cell("life", false).await, tonic::Code::NotFound);
    // No record either: the next daemon knows nothing of it.
    d.restart().await;
    assert!(
        listed(&d.client().await, "life").await.is_none(),
        "{}",
        d.log()
    );
    remove_bridge("life");
}

#[tokio::test]
async fn a_start_that_fails_must_leave_nothing() {
    let test = "a_start_that_fails_must_leave_nothing";
    if !fixture(test) {
        return;
    }
    let (good, bad) = nostart_images().await;
    let d = TestDaemon::start().await;
    let network = install_network(&d, "halfstart", 10);
    let c = d.client().await;
    let err = c
        .start_cell(cell("half", &[("good", &good), ("bad", &bad)]))
        .await
        .expect_err("the second container cannot start");
    let message = err
        .status()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("\"bad\""), "{message}");
    assert!(listed(&c, "half").await.is_none());
    assert_gone(&d, "half", &network);
    // Validation comes before anything is made.
    assert_code(
        c.start_cell(cell("bad name!", &[("good", &good)])).await,
        tonic::Code::InvalidArgument,
    );
    // And the name is free again.
    let ok = c
        .start_cell(cell("half", &[("good", &good)]))
        .await
        .expect("start");
    assert_eq!(ok.status, Status::Active as i32, "{ok:?}");
    c.remove_cell("half", true).await.expect("rm --force");
    assert_gone(&d, "half", &network);
    remove_bridge("halfstart");
}

/// Stop and Remove of one cell are serialised per cell: of two Removes at
/// once, one removes the cell and the other finds nothing (NOT_FOUND),
/// never a second teardown or an error from a half-removed cell; a Remove
/// of another cell goes on alongside.
#[tokio::test]
async fn concurrent_removes_of_one_cell_must_remove_it_once() {
    let test = "concurrent_removes_of_one_cell_must_remove_it_once";
    if !fixture(test) {
        return;
    }
    let d = TestDaemon::builder().stop_grace(1.0).start().await;
    let network = install_network(&d, "rmrace", 11);
    let image = push_derived("rm-race", "v1", &ImageSpec::sh("sleep 1000")).await;
    let c = d.client().await;
    for name in ["race-a", "race-b", "race-c"] {
        c.start_cell(cell(name, &[("s", &image)]))
            .await
            .expect("start");
    }
    // Running: each Remove --force stops the cell (the grace period) first.
    let (first, second, other) = tokio::join!(
        c.remove_cell("race-a", true),
        c.remove_cell("race-a", true),
        c.remove_cell("race-b", true),
    );
    other.expect("another cell is removed alongside");
    let codes: Vec<Option<tonic::Code>> = [first, second]
        .into_iter()
        .map(|r| r.err().and_then(|e| e.status().map(|s| s.code())))
        .collect();
    assert!(
        codes.contains(&None) && codes.contains(&Some(tonic::Code::NotFound)),
        "one removes, the other finds nothing: {codes:?}\n{}",
        d.log()
    );
    // Stopped: Stop and two Removes at once.
    c.stop_cell("race-c").await.expect("stop");
    let (stop, first, second) = tokio::join!(
        c.stop_cell("race-c"),
        c.remove_cell("race-c", false),
        c.remove_cell("race-c", false),
    );
    assert!(
        stop.is_ok()
            || stop
                .as_ref()
                .err()
                .and_then(|e| e.status())
                .map(|s| s.code())
                == Some(tonic::Code::NotFound),
        "{stop:?}"
    );
    let removed = [&first, &second].iter().filter(|r| r.is_ok()).count();
    assert_eq!(removed, 1, "{first:?} {second:?}");
    for name in ["race-a", "race-b", "race-c"] {
        assert!(listed(&c, name).await.is_none());
        assert_gone(&d, name, &network);
    }
    let log = d.log();
    assert!(
        !log.contains("removing the cell") && !log.contains("did not exit"),
        "no teardown failed: {log}"
    );
    remove_bridge("rmrace");
}

/// `--stop-workloads-at-exit` (a node being drained) stops detached cells
/// with the daemon, gracefully, and the next daemon lists them stopped.
#[tokio::test]
async fn a_draining_daemon_must_stop_detached_cells_and_keep_them() {
    let test = "a_draining_daemon_must_stop_detached_cells_and_keep_them";
    if !fixture(test) {
        return;
    }
    let image = push_derived(
        "drain-trap",
        "v1",
        &ImageSpec::sh(
            "trap 'exit 4' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ),
    )
    .await;
    let mut d = TestDaemon::builder()
        .arg("--stop-workloads-at-exit")
        .start()
        .await;
    let c = d.client().await;
    let mut spec = cell("drain", &[("trap", &image)]);
    spec.network = "none".into();
    c.start_cell(spec).await.expect("start");
    let pid = running_pid(&c, "drain").await;
    // A tick in the log: the trap is set (a SIGTERM before it would be
    // ignored by sh as pid 1, and the grace period would end in SIGKILL).
    more_ticks_than(&d, "drain", 0).await;
    drop(c);
    assert!(d.stop().expect("exit").success(), "{}", d.log());
    assert!(!alive(pid), "stopped with the daemon");
    d.restart().await;
    let c = d.client().await;
    let kept = listed(&c, "drain").await.expect("kept");
    assert_eq!(kept.status, Status::Passive as i32, "{kept:?}");
    assert_eq!(
        kept.containers[0].exit_code,
        Some(4),
        "graceful: {kept:?}\n{}",
        d.log()
    );
    c.remove_cell("drain", false).await.expect("rm");
    assert_gone(&d, "drain", "none");
}

/// A container that ends while no daemon runs is reported by the next one,
/// with its exit (its helper recorded it), and the cell is PASSIVE.
#[tokio::test]
async fn an_exit_while_the_daemon_was_down_must_be_reported() {
    let test = "an_exit_while_the_daemon_was_down_must_be_reported";
    if !fixture(test) {
        return;
    }
    let image = push_derived("away-sleep", "v1", &ImageSpec::sh("exec sleep 1000")).await;
    let mut d = TestDaemon::start().await;
    let c = d.client().await;
    let mut spec = cell("away", &[("sleep", &image)]);
    spec.network = "none".into();
    c.start_cell(spec).await.expect("start");
    let pid = running_pid(&c, "away").await;
    drop(c);
    d.kill9();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the container");
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.restart().await;
    let c = d.client().await;
    let away = listed(&c, "away").await.expect("kept");
    assert_eq!(away.status, Status::Passive as i32, "{away:?}");
    let k = &away.containers[0];
    assert_eq!(k.exit_code, Some(137), "{away:?}");
    assert_eq!(
        k.meta.as_ref().map(|m| m.message.as_str()),
        Some("killed by signal 9 (SIGKILL) (while the daemon was down)"),
        "{away:?}"
    );
    c.remove_cell("away", false).await.expect("rm");
    assert_gone(&d, "away", "none");
}
