//! Scheduled executables run under a monitor of their own: a daemon that
//! stops (SIGTERM) or crashes (SIGKILL) leaves them running, the next daemon
//! adopts them (same pid, output from before the restart still readable),
//! reports an exit that happened while it was down, stops them on Destroy,
//! and only `--stop-workloads-at-exit` makes a stop take them down.

mod common;
mod schedule_support;

use std::time::{Duration, Instant};

use aurae_proto::observe::{LogChannelType, LogItem};
use common::{alive, eventually, require_root, TestDaemon};
use schedule_support::{enabled, exe, named, processes_with_argv, socket_released, Line};
use tokio_stream::StreamExt;

/// A unit printing `tick 0`, `tick 1`, ... every 0.2 s; `tag` makes its
/// command line unique to one test.
fn ticker_script(tag: &str) -> String {
    format!("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done; : {tag}")
}

/// The ticker shells: those whose parent is not a ticker shell too (the
/// loop forks a copy of itself for each `sleep` before it execs).
fn tickers(tag: &str) -> Vec<i32> {
    let script = ticker_script(tag);
    let all = processes_with_argv(&["sh", "-c", &script]);
    all.iter()
        .copied()
        .filter(|p| ppid(*p).is_some_and(|pp| !all.contains(&pp)) && alive(*p))
        .collect()
}

/// Waits until `name` is shown with a running pid that satisfies `ok`.
async fn shown(d: &TestDaemon, name: &str, ok: impl Fn(&Line) -> bool) -> Line {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let line = enabled(d).await.get(name).map(|(_, l)| l.clone());
        if let Some(l) = &line {
            if l.pid != 0 && ok(l) {
                return l.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} shown as {line:?}:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ignored-signal mask of `pid`, as /proc shows it.
///
/// Only SigIgn: dash blocks every signal for a moment around each vfork of a
/// command (`sleep` here) and clears the mask after it, so SigBlk of the
/// ticker says nothing about its launcher. The launcher's empty blocked mask
/// is asserted by `process::vfork`'s own tests on a program that keeps it.
fn ignored_signals(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The parent of `pid` (field 4 of /proc/PID/stat).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Kills whatever still runs with `argv` (after a failed test).
fn kill_all(argv: &[&str]) {
    for p in processes_with_argv(argv) {
        kill(p);
    }
}

/// Reads items until the stream ends or `until` holds for the last one.
async fn read(
    stream: &mut tonic::Streaming<LogItem>,
    secs: u64,
    until: impl Fn(&[String]) -> bool,
) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let finished = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(item) = stream.next().await {
            lines.push(item.expect("item").line);
            if until(&lines) {
                return false;
            }
        }
        true
    })
    .await;
    match finished {
        Ok(ended) => (lines, ended),
        Err(_) => panic!(
            "no end within {secs}s; got {} lines: {lines:?}",
            lines.len()
        ),
    }
}

fn assert_ticks(lines: &[String]) {
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("tick {i}"), "line {i} of {lines:?}");
    }
}

async fn must_survive(crash: bool) {
    let tag = if crash { "sigkill" } else { "sigterm" };
    let script = ticker_script(tag);
    let argv = ["sh", "-c", script.as_str()];
    let mut d = TestDaemon::start().await;
    let c = d.client().await;
    c.enable(exe("ticker", &format!("sh -c '{script}'")))
        .await
        .expect("Enable");
    let pid = shown(&d, "ticker", |_| true).await.pid;
    assert_eq!(
        ignored_signals(pid),
        "0000000000000000",
        "the workload inherits none of the signals its monitor ignores (SIGTERM, SIGHUP, ...)"
    );
    // Some output before the daemon goes away.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    drop(c);
    if crash {
        d.kill9();
        socket_released(&d).await;
    } else {
        d.stop().expect("auraed exited");
    }
    let how = if crash { "SIGKILL" } else { "SIGTERM" };
    assert!(
        alive(pid),
        "the scheduled process died with the daemon ({how})"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        alive(pid),
        "the scheduled process died after the daemon ({how})"
    );
    assert_eq!(
        tickers(tag),
        [pid],
        "{:?}",
        processes_with_argv(&argv)
            .iter()
            .map(|p| (*p, ppid(*p)))
            .collect::<Vec<_>>()
    );

    d.restart().await;
    let line = shown(&d, "ticker", |_| true).await;
    assert_eq!(line.pid, pid, "adopted with the same pid: {line:?}");
    assert_eq!(line.status, "STATUS_ACTIVE", "{line:?}");
    assert_eq!(tickers(tag), [pid], "not started twice");

    let c = d.client().await;
    let mut history = c
        .sub_process_output(pid as i64, LogChannelType::ChannelStdout, true)
        .await
        .unwrap_or_else(|e| panic!("stream of adopted pid {pid}: {e}\n{}", d.log()));
    let (past, ended) = read(&mut history, 10, |_| false).await;
    assert!(ended, "no_follow must end");
    assert!(
        past.len() >= 6,
        "the output from before the restart: {past:?}"
    );
    assert_ticks(&past);

    let mut live = c
        .sub_process_output(pid as i64, LogChannelType::ChannelStdout, false)
        .await
        .expect("follow");
    let want = past.len() + 5;
    let (more, ended) = read(&mut live, 15, |l| l.len() >= want).await;
    assert!(!ended, "a running process's stream must not end");
    assert_ticks(&more);
    assert!(more.len() >= want, "{more:?}");
    drop(live);

    c.destroy(named("ticker")).await.expect("Destroy");
    assert!(
        eventually(10, || !alive(pid)).await,
        "Destroy did not stop {pid}"
    );
    kill_all(&argv);
}

#[tokio::test]
async fn schedule_must_keep_running_across_a_daemon_sigterm() {
    if !require_root("schedule_must_keep_running_across_a_daemon_sigterm") {
        return;
    }
    must_survive(false).await;
}

#[tokio::test]
async fn schedule_must_keep_running_across_a_daemon_sigkill() {
    if !require_root("schedule_must_keep_running_across_a_daemon_sigkill") {
        return;
    }
    must_survive(true).await;
}

#[tokio::test]
async fn schedule_must_report_an_exit_while_the_daemon_was_down() {
    if !require_root("schedule_must_report_an_exit_while_the_daemon_was_down") {
        return;
    }
    let mut d = TestDaemon::start().await;
    let flag = d.dir.path().join("exit-now");
    let command = format!(
        "sh -c 'while [ ! -e {f} ]; do sleep 0.05; done; rm -f {f}; exit 7'",
        f = flag.display()
    );
    let c = d.client().await;
    c.enable(exe("exiter", &command)).await.expect("Enable");
    let first = shown(&d, "exiter", |_| true).await.pid;
    let monitor = ppid(first);
    drop(c);
    d.kill9();
    socket_released(&d).await;
    assert!(alive(first), "the unit died with the daemon");
    std::fs::write(&flag, b"").expect("flag");
    assert!(
        eventually(10, || !alive(first)).await,
        "{first} did not exit"
    );
    // The monitor records the exit, then ends; the next daemon reads what it recorded.
    if let Some(m) = monitor {
        // A sibling test makes this process the child subreaper (process-wide):
        // the orphaned monitor may then be ours to reap.
        let reap = || {
            let flags = nix::sys::wait::WaitPidFlag::WNOHANG;
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(m), Some(flags));
            std::fs::metadata(format!("/proc/{m}")).is_err()
        };
        assert!(
            eventually(10, reap).await,
            "the monitor {m} of {first} is still there: {:?}",
            std::fs::read_to_string(format!("/proc/{m}/stat"))
        );
    }

    d.restart().await;
    let line = shown(&d, "exiter", |l| l.pid != first).await;
    assert!(
        line.last_exit.contains("exited with code 7")
            && line.last_exit.contains("while the daemon was down"),
        "last_exit: {line:?}\n{}",
        d.log()
    );
    assert_eq!(line.status, "STATUS_ACTIVE", "{line:?}");
    assert!(alive(line.pid), "the restarted unit runs: {line:?}");
    assert!(!flag.exists());

    d.client()
        .await
        .destroy(named("exiter"))
        .await
        .expect("Destroy");
    assert!(eventually(10, || !alive(line.pid)).await);
}

#[tokio::test]
async fn schedule_must_stop_with_the_daemon_when_asked_to() {
    if !require_root("schedule_must_stop_with_the_daemon_when_asked_to") {
        return;
    }
    let mut d = TestDaemon::builder()
        .arg("--stop-workloads-at-exit")
        .start()
        .await;
    let argv = ["sleep", "8300031"];
    let c = d.client().await;
    c.enable(exe("stopped", "sleep 8300031"))
        .await
        .expect("Enable");
    let pid = shown(&d, "stopped", |_| true).await.pid;
    assert_eq!(processes_with_argv(&argv), [pid]);
    drop(c);
    d.stop().expect("auraed exited");
    let gone = eventually(1, || !alive(pid)).await;
    kill_all(&argv);
    assert!(
        gone,
        "with --stop-workloads-at-exit a SIGTERM must stop {pid}:\n{}",
        d.log()
    );
}

#[tokio::test]
async fn schedule_must_stop_an_adopted_process_on_destroy() {
    if !require_root("schedule_must_stop_an_adopted_process_on_destroy") {
        return;
    }
    let mut d = TestDaemon::start().await;
    let argv = ["sleep", "8300041"];
    let c = d.client().await;
    c.enable(exe("adopted", "sleep 8300041"))
        .await
        .expect("Enable");
    let pid = shown(&d, "adopted", |_| true).await.pid;
    drop(c);
    d.kill9();
    socket_released(&d).await;
    d.restart().await;
    let line = shown(&d, "adopted", |_| true).await;
    assert_eq!(line.pid, pid, "adopted: {line:?}");
    d.client()
        .await
        .destroy(named("adopted"))
        .await
        .expect("Destroy");
    let gone = eventually(10, || !alive(pid)).await;
    let left = processes_with_argv(&argv);
    kill_all(&argv);
    assert!(gone, "Destroy after a restart did not stop {pid}");
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(!enabled(&d).await.contains_key("adopted"));
}

/// The state letter of `pid` (field 3 of /proc/PID/stat).
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// A daemon restarted right after a unit exited, before its monitor (a
/// zombie, not yet reaped by whoever inherited it) is gone: the exit still
/// happened while the daemon was down. The test process makes itself the
/// child subreaper so that it decides when the orphaned monitor is reaped.
#[tokio::test]
async fn schedule_must_report_an_exit_while_the_daemon_was_down_before_its_monitor_is_reaped() {
    if !require_root(
        "schedule_must_report_an_exit_while_the_daemon_was_down_before_its_monitor_is_reaped",
    ) {
        return;
    }
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
    let mut d = TestDaemon::start().await;
    let flag = d.dir.path().join("exit-now");
    let command = format!(
        "sh -c 'while [ ! -e {f} ]; do sleep 0.05; done; rm -f {f}; exit 7'",
        f = flag.display()
    );
    let c = d.client().await;
    c.enable(exe("exiter", &command)).await.expect("Enable");
    let first = shown(&d, "exiter", |_| true).await.pid;
    let monitor = ppid(first).expect("the monitor of the unit");
    drop(c);
    d.kill9();
    socket_released(&d).await;
    assert_eq!(
        ppid(monitor),
        Some(std::process::id() as i32),
        "reparented to the test"
    );
    std::fs::write(&flag, b"").expect("flag");
    assert!(
        eventually(10, || state(monitor) == Some('Z')).await,
        "the monitor {monitor} did not end: {:?}",
        state(monitor)
    );

    d.restart().await;
    let line = shown(&d, "exiter", |l| l.pid != first).await;
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(monitor), None);
    d.client()
        .await
        .destroy(named("exiter"))
        .await
        .expect("Destroy");
    assert!(
        line.last_exit.contains("exited with code 7")
            && line.last_exit.contains("while the daemon was down"),
        "last_exit: {line:?}"
    );
}
