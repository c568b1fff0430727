//! Scheduled executables run in their own cgroup, are restarted when they
//! die, give up after the start limit, stop on Disable, vanish on Destroy,
//! and bad requests change nothing.

mod common;
mod schedule_support;

use std::time::Duration;

use aurae_proto::observe::LogChannelType;
use common::{alive, eventually, require_root, TestDaemon};
use schedule_support::{
    cgroup_dirs, cgroup_pids, code, disabled, enabled, exe, named, parse, plain_log,
    processes_with_argv,
};
use tokio_stream::StreamExt;

#[tokio::test]
async fn schedule_must_run_an_enabled_executable_in_its_cgroup_with_its_output_streamed() {
    if !require_root(
        "schedule_must_run_an_enabled_executable_in_its_cgroup_with_its_output_streamed",
    ) {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let r = c.enable(exe("web", "sleep 8100001")).await.expect("Enable");
    let line = parse(&r.meta.expect("meta").message);
    assert_eq!(line.status, "STATUS_ACTIVE", "{line:?}");
    assert!(line.pid > 1);

    let list = enabled(&d).await;
    let (command, shown) = &list["web"];
    assert_eq!(command, "sleep 8100001");
    assert_eq!(
        (
            shown.status.as_str(),
            shown.pid,
            shown.restarts,
            shown.last_exit.as_str()
        ),
        ("STATUS_ACTIVE", line.pid, 0, "")
    );
    assert_eq!(
        processes_with_argv(&["sleep", "8100001"]),
        [line.pid],
        "exactly one process runs it, the one reported"
    );
    assert_eq!(
        cgroup_pids(&d, "web"),
        [line.pid],
        "the process is in <root>/schedule/web.scope"
    );
    let proc_cgroup =
        std::fs::read_to_string(format!("/proc/{}/cgroup", line.pid)).expect("/proc/pid/cgroup");
    let ours = format!("/{}/schedule/web.scope", d.cgroup_root());
    assert!(
        proc_cgroup.lines().any(|l| l.ends_with(&ours)),
        "{proc_cgroup}"
    );
    assert!(disabled(&d).await.is_empty());

    // Its output is on GetSubProcessStream by its pid.
    let r = c
        .enable(exe(
            "talker",
            "sh -c 'echo hello-from-schedule; exec sleep 8100002'",
        ))
        .await
        .expect("Enable");
    let pid = parse(&r.meta.expect("meta").message).pid;
    let mut out = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .expect("stream");
    let first = tokio::time::timeout(Duration::from_secs(10), out.next())
        .await
        .expect("a line in time");
    assert_eq!(
        first.expect("item").expect("ok").line,
        "hello-from-schedule"
    );

    // The start is a daemon log record.
    let log_has_start = || {
        let log = plain_log(&d);
        log.lines().any(|l| {
            l.contains("scheduled executable started") && l.contains(&format!("pid={pid}"))
        })
    };
    assert!(
        eventually(5, log_has_start).await,
        "no start record for pid {pid}:\n{}",
        d.log()
    );
}

#[tokio::test]
async fn schedule_must_restart_a_killed_process_with_a_new_pid() {
    if !require_root("schedule_must_restart_a_killed_process_with_a_new_pid") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let r = c.enable(exe("svc", "sleep 8100011")).await.expect("Enable");
    let first = parse(&r.meta.expect("meta").message).pid;
    assert!(alive(first));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");

    let mut line = None;
    for _ in 0..250 {
        let l = enabled(&d).await["svc"].1.clone();
        if l.pid != 0 && l.pid != first {
            line = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = line.unwrap_or_else(|| panic!("not restarted within 5s:\n{}", d.log()));
    assert_eq!(line.status, "STATUS_ACTIVE");
    assert_eq!(line.restarts, 1);
    assert_eq!(line.last_exit, "killed by signal 9 (SIGKILL)");
    assert!(!alive(first));
    assert_eq!(processes_with_argv(&["sleep", "8100011"]), [line.pid]);
    assert_eq!(cgroup_pids(&d, "svc"), [line.pid]);
    let log = plain_log(&d);
    assert!(
        log.contains("scheduled executable exited: restarting it"),
        "{log}"
    );
    assert!(log.contains("restarting scheduled executable"), "{log}");
}

#[tokio::test]
async fn schedule_must_report_status_error_when_the_start_limit_is_hit() {
    if !require_root("schedule_must_report_status_error_when_the_start_limit_is_hit") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    c.enable(exe("fails", "sh -c 'exit 1'"))
        .await
        .expect("Enable");
    c.enable(exe("missing", "/nonexistent/aurae-no-such-binary"))
        .await
        .expect("Enable");
    let mut list = enabled(&d).await;
    for _ in 0..500 {
        if list.values().all(|(_, l)| l.status == "STATUS_ERROR") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        list = enabled(&d).await;
    }
    let fails = &list["fails"].1;
    assert_eq!(fails.status, "STATUS_ERROR", "{list:?}");
    assert_eq!(
        fails.error.as_deref(),
        Some("start limit hit: 5 starts within 10s; last exit: exited with code 1")
    );
    assert_eq!(
        (fails.pid, fails.restarts, fails.last_exit.as_str()),
        (0, 4, "exited with code 1")
    );
    let missing = &list["missing"].1;
    assert_eq!(missing.status, "STATUS_ERROR", "{list:?}");
    assert!(
        missing.last_exit.starts_with("could not start"),
        "{missing:?}"
    );
    assert!(
        missing
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("start limit hit: 5 starts within 10s")),
        "{missing:?}"
    );
    assert!(cgroup_pids(&d, "fails").is_empty());
    // Given up means given up: nothing starts later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(enabled(&d).await["fails"].1.restarts, 4);
    assert!(d.log().contains("start limit hit"), "{}", d.log());
}

#[tokio::test]
async fn schedule_must_stop_the_whole_cgroup_on_disable_and_forget_on_destroy() {
    if !require_root("schedule_must_stop_the_whole_cgroup_on_disable_and_forget_on_destroy") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    // A main process that ignores SIGTERM and a child: both must go (SIGKILL after the grace).
    let command = "sh -c 'trap \"\" TERM; sleep 8100021 & sleep 8100022; wait'";
    let r = c.enable(exe("tree", command)).await.expect("Enable");
    let main = parse(&r.meta.expect("meta").message).pid;
    assert!(
        eventually(5, || cgroup_pids(&d, "tree").len() == 3).await,
        "{:?}",
        cgroup_pids(&d, "tree")
    );
    let sleeps = || {
        [
            processes_with_argv(&["sleep", "8100021"]),
            processes_with_argv(&["sleep", "8100022"]),
        ]
        .concat()
    };
    assert!(
        eventually(5, || sleeps().len() == 2).await,
        "{:?}",
        sleeps()
    );
    let children = sleeps();

    let r = c.disable(named("tree")).await.expect("Disable");
    let line = parse(&r.meta.expect("meta").message);
    assert_eq!((line.status.as_str(), line.pid), ("STATUS_PASSIVE", 0));
    for pid in children.iter().chain([&main]) {
        assert!(!alive(*pid), "pid {pid} still runs after Disable answered");
    }
    assert!(cgroup_pids(&d, "tree").is_empty());
    assert!(
        cgroup_dirs(&d, "tree").iter().all(|p| !p.exists()),
        "the cgroup is removed"
    );
    assert!(!enabled(&d).await.contains_key("tree"));
    let off = disabled(&d).await;
    assert_eq!(off["tree"].0, command);
    assert_eq!(off["tree"].1.status, "STATUS_PASSIVE");
    c.disable(named("tree"))
        .await
        .expect("Disable of a disabled one is fine");

    // Registered with another command: refused, enabled or not.
    assert_eq!(
        code(c.enable(exe("tree", "sleep 1")).await),
        tonic::Code::AlreadyExists
    );
    let r = c.enable(exe("tree", command)).await.expect("Enable again");
    let again = parse(&r.meta.expect("meta").message).pid;
    assert!(again != main && alive(again));
    assert_eq!(
        code(c.enable(exe("tree", "sleep 1")).await),
        tonic::Code::AlreadyExists
    );
    let same = c
        .enable(exe("tree", command))
        .await
        .expect("idempotent Enable");
    assert_eq!(parse(&same.meta.expect("meta").message).pid, again);

    c.destroy(named("tree")).await.expect("Destroy");
    assert!(!alive(again));
    assert!(processes_with_argv(&["sleep", "8100022"]).is_empty());
    assert!(cgroup_pids(&d, "tree").is_empty());
    assert!(!enabled(&d).await.contains_key("tree"));
    assert!(!disabled(&d).await.contains_key("tree"));
    assert_eq!(code(c.destroy(named("tree")).await), tonic::Code::NotFound);
    assert_eq!(code(c.disable(named("tree")).await), tonic::Code::NotFound);
    // The name is free again, for any command.
    c.enable(exe("tree", "sleep 8100023"))
        .await
        .expect("Enable after Destroy");
    assert_eq!(processes_with_argv(&["sleep", "8100023"]).len(), 1);
}

#[tokio::test]
async fn schedule_must_reject_bad_input_and_store_nothing() {
    if !require_root("schedule_must_reject_bad_input_and_store_nothing") {
        return;
    }
    let mut d = TestDaemon::start().await;
    let c = d.client().await;
    let long_name = "n".repeat(65);
    let long_command = format!("sleep {}", "1".repeat(64 * 1024));
    let mut cases = vec![
        exe("", "sleep 8100031"),
        exe("a/b", "sleep 8100031"),
        exe("..", "sleep 8100031"),
        exe("../etc", "sleep 8100031"),
        exe(&long_name, "sleep 8100031"),
        exe("ok", ""),
        exe("ok", "  \t "),
        exe("ok", "sleep '8100031"),
        exe("ok", &long_command),
    ];
    let mut long_comment = exe("ok", "sleep 8100031");
    long_comment.comment = "c".repeat(4 * 1024 + 1);
    cases.push(long_comment);
    let mut no_meta = exe("ok", "sleep 8100031");
    no_meta.meta = None;
    cases.push(no_meta);
    for case in cases {
        let name = case.meta.as_ref().map(|m| m.name.clone());
        let r = c.enable(case).await;
        let status = r.as_ref().err().and_then(|e| e.status()).cloned();
        assert_eq!(
            code(r),
            tonic::Code::InvalidArgument,
            "{name:?}: {status:?}"
        );
        assert!(status.is_some_and(|s| !s.message().is_empty()));
    }
    for bad in ["", "a/b", ".."] {
        assert_eq!(
            code(c.disable(named(bad)).await),
            tonic::Code::InvalidArgument,
            "{bad:?}"
        );
        assert_eq!(
            code(c.destroy(named(bad)).await),
            tonic::Code::InvalidArgument,
            "{bad:?}"
        );
    }
    assert!(enabled(&d).await.is_empty());
    assert!(disabled(&d).await.is_empty());
    assert!(processes_with_argv(&["sleep", "8100031"]).is_empty());
    d.restart().await;
    assert!(
        enabled(&d).await.is_empty() && disabled(&d).await.is_empty(),
        "nothing was stored"
    );
}
