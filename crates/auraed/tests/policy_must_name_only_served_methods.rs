//! Every service and method an authorization policy names must be one the
//! daemon serves: a typo stops the daemon at start, is refused on reload
//! (SIGHUP keeps the policy in force), and `auraed policy check` names it.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aurae_proto::runtime::Executable;
use common::{eventually, require_root, TestDaemon};

/// admin may call everything; viewer what is given.
fn policy(viewer: &[&str]) -> String {
    let methods: Vec<String> = viewer.iter().map(|m| format!("{m:?}")).collect();
    format!(
        "[[allow]]\nidentities = [\"admin\"]\nmethods = [\"*\"]\n\n[[allow]]\nidentities = [\"viewer\"]\nmethods = [{}]\n",
        methods.join(", ")
    )
}

fn good() -> String {
    policy(&["observe.Observe"])
}

fn typo() -> String {
    policy(&["observe.Observe", "runtime.Core/RunExecutabel"])
}

const TYPO_MESSAGE: &str =
    "rule 2: unknown method \"runtime.Core/RunExecutabel\": did you mean \"runtime.Core/RunExecutable\"?";

/// Runs auraed to its end; one that is still running after 10 s (a daemon
/// that started) is killed, and its output returned all the same.
fn auraed(args: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auraed"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run auraed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write policy");
    p
}

#[tokio::test]
async fn a_policy_typo_must_stop_the_daemon_at_start() {
    if !require_root("a_policy_typo_must_stop_the_daemon_at_start") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let policy = write(dir.path(), "authz.toml", &typo());
    let out = auraed(&[
        "--authz-policy".as_ref(),
        policy.as_os_str(),
        "--socket".as_ref(),
        dir.path().join("s.sock").as_os_str(),
        "--state-dir".as_ref(),
        dir.path().join("state").as_os_str(),
        "--runtime-dir".as_ref(),
        dir.path().join("run").as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a typo:\n{stderr}");
    assert!(stderr.contains(TYPO_MESSAGE), "{stderr}");
    assert!(
        !dir.path().join("s.sock").exists(),
        "the socket was created before the policy was checked"
    );
}

#[tokio::test]
async fn a_policy_typo_on_reload_must_keep_the_policy_in_force() {
    if !require_root("a_policy_typo_on_reload_must_keep_the_policy_in_force") {
        return;
    }
    let d = TestDaemon::builder().policy(&good()).start().await;
    let path = d.dir.path().join("authz.toml");
    let pid = nix::unistd::Pid::from_raw(d.pid().expect("pid") as i32);
    let hup = || nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let viewer = d.client_as("viewer").await;
    let run = || {
        viewer.run_executable(Executable {
            command: "true".into(),
            ..Default::default()
        })
    };
    assert!(run().await.is_err(), "the viewer may not run before");

    std::fs::write(&path, typo()).expect("write typo");
    hup();
    assert!(
        eventually(10, || d.log().contains("keeping the policy in force")).await,
        "no word about the refused reload:\n{}",
        d.log()
    );
    assert!(
        d.log().contains("runtime.Core/RunExecutabel"),
        "{}",
        d.log()
    );
    viewer
        .status()
        .await
        .expect("the old policy still grants observe.Observe");
    let denied = run()
        .await
        .expect_err("the old policy still denies RunExecutable");
    assert_eq!(
        denied.status().map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );

    // A valid policy is taken on the next SIGHUP.
    std::fs::write(
        &path,
        policy(&["observe.Observe", "runtime.Core/RunExecutable"]),
    )
    .expect("write grant");
    hup();
    assert!(
        eventually(10, || d.log().contains("authorization policy reloaded")).await,
        "{}",
        d.log()
    );
    assert_eq!(
        run().await.expect("granted by the new policy").exit_code,
        "0"
    );
}

#[test]
fn auraed_policy_check_must_say_ok_or_name_each_bad_entry() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = write(dir.path(), "good.toml", &good());
    let out = auraed(&["policy".as_ref(), "check".as_ref(), good.as_os_str()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");

    let bad = write(
        dir.path(),
        "bad.toml",
        &format!(
            "{}\n[[allow]]\nidentities = [\"ci\"]\nmethods = [\"schedule.Schedul\"]\n",
            typo()
        ),
    );
    let out = auraed(&["policy".as_ref(), "check".as_ref(), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("auraed: {}: {TYPO_MESSAGE}", bad.display()),
            format!(
                "auraed: {}: rule 3: unknown service \"schedule.Schedul\": did you mean \"schedule.Schedule\"?",
                bad.display()
            ),
        ],
    );
}
