//! RunExecutable returns the real outputs, exit codes and errors of host commands.

mod common;

use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::runtime::{Executable, ExecutableStatus};
use common::{exe, require_root, TestDaemon};

async fn run(d: &TestDaemon, command: &str) -> ExecutableStatus {
    d.client()
        .await
        .run_executable(exe(command))
        .await
        .expect("RunExecutable")
}

#[tokio::test]
async fn run_executable_must_return_outputs_and_exit_codes() {
    if !require_root("run_executable_must_return_outputs_and_exit_codes") {
        return;
    }
    let d = TestDaemon::start().await;

    let ok = run(&d, "sh -c 'echo out; echo err >&2'").await;
    assert_eq!(ok.status, Status::Complete as i32);
    assert_eq!(ok.stdout, "out\n");
    assert_eq!(ok.stderr, "err\n");
    assert_eq!(ok.exit_code, "0");
    assert!(ok.proc.expect("proc").pid > 1);
    assert_eq!(ok.meta.expect("meta").message, "exited with code 0");

    let three = run(&d, "sh -c 'exit 3'").await;
    assert_eq!(three.exit_code, "3");
    assert_eq!(three.status, Status::Complete as i32);

    let killed = run(&d, "sh -c 'kill -9 $$'").await;
    assert_eq!(killed.exit_code, "137");
    assert_eq!(
        killed.meta.expect("meta").message,
        "killed by signal 9 (SIGKILL)"
    );
}

#[tokio::test]
async fn run_executable_must_honour_quoting_without_a_shell() {
    if !require_root("run_executable_must_honour_quoting_without_a_shell") {
        return;
    }
    let d = TestDaemon::start().await;
    let r = run(&d, r#"printf "%s|" "a b" 'c "d"' e\ f $HOME"#).await;
    assert_eq!(r.stdout, "a b|c \"d\"|e f|$HOME|");
}

#[tokio::test]
async fn run_executable_must_return_a_large_output_whole() {
    if !require_root("run_executable_must_return_a_large_output_whole") {
        return;
    }
    let d = TestDaemon::start().await;
    // 1 MiB on stdout and on stderr at once: larger than a pipe buffer, so a
    // reader that drained one pipe after the other would deadlock.
    let r = run(&d, "sh -c 'head -c 1048576 /dev/zero | tr \"\\\\0\" a; head -c 1048576 /dev/zero | tr \"\\\\0\" b >&2'").await;
    assert_eq!(
        r.exit_code,
        "0",
        "stderr: {}",
        &r.stderr[..r.stderr.len().min(200)]
    );
    assert_eq!(r.stdout.len(), 1 << 20);
    assert!(r.stdout.bytes().all(|b| b == b'a'));
    assert_eq!(r.stderr.len(), 1 << 20);
    assert!(r.stderr.bytes().all(|b| b == b'b'));
}

#[tokio::test]
async fn run_executable_must_report_a_missing_binary() {
    if !require_root("run_executable_must_report_a_missing_binary") {
        return;
    }
    let d = TestDaemon::start().await;
    let r = run(&d, "/nonexistent/aurae-no-such-binary --flag").await;
    assert_eq!(r.status, Status::Error as i32);
    let msg = r.meta.expect("meta").message;
    assert!(msg.contains("/nonexistent/aurae-no-such-binary"), "{msg}");
    assert!(msg.contains("No such file or directory"), "{msg}");
    assert_eq!(r.exit_code, "");
    assert!(
        common::exec_cgroups(&d).is_empty(),
        "failed start left a cgroup"
    );
}

#[tokio::test]
async fn run_executable_must_refuse_bad_input() {
    if !require_root("run_executable_must_refuse_bad_input") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    for (command, needle) in [
        ("", "command is empty"),
        ("   ", "command is empty"),
        ("echo 'open", "unterminated"),
    ] {
        let e = c.run_executable(exe(command)).await.expect_err(command);
        let s = e.status().expect("status");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{command:?}");
        assert!(s.message().contains(needle), "{command:?}: {}", s.message());
    }
    let bad_name = Executable {
        meta: Some(AuraeMeta {
            name: "../x".into(),
            message: String::new(),
        }),
        ..exe("true")
    };
    let e = c.run_executable(bad_name).await.expect_err("bad name");
    assert_eq!(
        e.status().map(|s| s.code()),
        Some(tonic::Code::InvalidArgument)
    );
}

#[tokio::test]
async fn run_executable_must_run_in_its_own_cgroup() {
    if !require_root("run_executable_must_run_in_its_own_cgroup") {
        return;
    }
    let d = TestDaemon::start().await;
    let r = run(&d, "cat /proc/self/cgroup").await;
    let root = d.cgroup_root();
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains(":pids:") || l.starts_with("0::"))
        .expect("a pids or v2 line");
    assert!(line.contains(&format!("/{root}/exec/run-")), "{}", r.stdout);
    // Kept, empty, for the next run with the default limits (no mkdir or
    // rmdir on its path), and removed once no run wanted it for a second.
    // It goes back to the pool just after the reply.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(common::exec_pids(&d).is_empty());
    let next = run(&d, "cat /proc/self/cgroup").await;
    assert_eq!(next.stdout, r.stdout, "the next run reuses the kept cgroup");
    assert!(
        common::eventually(10, || common::exec_cgroups(&d).is_empty()).await,
        "the kept cgroup is removed when idle: {:?}",
        common::exec_cgroups(&d)
    );
}

#[tokio::test]
async fn run_executable_must_kill_what_the_command_left_behind() {
    if !require_root("run_executable_must_kill_what_the_command_left_behind") {
        return;
    }
    let d = TestDaemon::start().await;
    // The background sleep keeps stdout open; it must be killed with the cgroup.
    let r = run(&d, "sh -c 'sleep 1000 & echo $!'").await;
    let pid: i32 = r.stdout.trim().parse().expect("pid of the sleep");
    assert!(
        common::eventually(5, || !common::alive(pid)).await,
        "background child {pid} survived"
    );
    assert!(common::exec_pids(&d).is_empty());
}

#[tokio::test]
async fn run_executable_must_pass_byte_escapes_as_raw_bytes() {
    if !require_root("run_executable_must_pass_byte_escapes_as_raw_bytes") {
        return;
    }
    let d = TestDaemon::start().await;
    // As systemd's ExecStart=: \xff and \377 are the byte 0xff, \u00e9 is é in UTF-8.
    let r = run(&d, r"sh -c 'printf %s $1 | od -An -tx1' sh \xff\377\u00e9").await;
    assert_eq!(r.exit_code, "0", "{}", r.stderr);
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        ["ff", "ff", "c3", "a9"]
    );
}

#[tokio::test]
async fn run_executable_must_not_leave_a_process_running_without_its_log() {
    if !require_root("run_executable_must_not_leave_a_process_running_without_its_log") {
        return;
    }
    let d = TestDaemon::start().await;
    // The log directory is made while the child starts: a log store that
    // refuses it (here: its directory replaced by a file, which works on
    // any file system) must end the child again.
    let workloads = d.state_dir.join("logs/workloads");
    let aside = d.state_dir.join("logs/workloads.aside");
    std::fs::rename(&workloads, &aside).expect("move the log directories aside");
    std::fs::write(&workloads, b"not a directory").expect("a file in their place");
    let r = d
        .client()
        .await
        .run_executable(exe("sh -c 'exec sleep 987654'"))
        .await;
    std::fs::remove_file(&workloads).expect("remove the file");
    std::fs::rename(&aside, &workloads).expect("move the log directories back");
    let message = match r {
        Ok(s) => {
            assert_eq!(s.status, Status::Error as i32, "{s:?}");
            s.meta.expect("meta").message
        }
        Err(e) => e
            .status()
            .map(|s| s.message().to_string())
            .unwrap_or_default(),
    };
    assert!(message.contains("log"), "{message}");
    assert!(
        common::eventually(5, || common::pids_with("987654").is_empty()).await,
        "the child runs on without a log: {:?}",
        common::pids_with("987654")
    );
    assert!(
        common::eventually(10, || common::exec_cgroups(&d).is_empty()).await,
        "its cgroup is left: {:?}",
        common::exec_cgroups(&d)
    );
    // The store works again once the directory does.
    let after = run(&d, "echo again").await;
    assert_eq!(after.stdout, "again\n");
}
