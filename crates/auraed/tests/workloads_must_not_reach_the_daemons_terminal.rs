//! A daemon started from a terminal (as `hack/up.sh` runs it) keeps that
//! terminal from its workloads: each is in a process group of its own,
//! outside the terminal's foreground group, and has no controlling
//! terminal, while the daemon itself has let go of it.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use aurae_client::{AuraeConfig, Client};
use auraed::pki::{self, PkiInitOptions};

/// `pgrp`, `session` and `tty_nr` of a /proc/PID/stat line.
fn stat_fields(stat: &str) -> (i32, i32, i32) {
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let f: Vec<i32> = rest
        .split_whitespace()
        .skip(2)
        .take(3)
        .map(|x| x.parse().unwrap_or(-1))
        .collect();
    assert_eq!(f.len(), 3, "a stat line: {stat:?}");
    (f[0], f[1], f[2])
}

fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds; the name, termios and size are optional.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned only here.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

#[tokio::test]
async fn workloads_get_neither_the_daemons_terminal_nor_its_process_group() {
    if !common::require_root("workloads_get_neither_the_daemons_terminal_nor_its_process_group") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |s: &str| dir.path().join(s);
    pki::init(&PkiInitOptions {
        pki_dir: p("pki"),
        client_dir: p("client"),
        client_name: "admin".into(),
        config_path: p("config"),
        socket: p("aurae.sock"),
        force: false,
        validity_days: 1,
    })
    .expect("pki");
    let (master, slave) = pty();
    // `setsid --ctty` makes a shell lead a new session whose controlling
    // terminal is the pty; the daemon is its child, as a job of a login
    // shell is: a session member with the terminal, not its leader.
    let script = r#"auraed="$1"; shift; "$auraed" "$@" & echo $! > "$PIDFILE"; wait"#;
    let log = std::fs::File::create(p("auraed.log")).expect("log");
    let mut cmd = Command::new("setsid");
    cmd.args(["--ctty", "sh", "-c", script, "sh"])
        .arg(env!("CARGO_BIN_EXE_auraed"));
    let files = [
        ("--socket", "aurae.sock"),
        ("--ca-crt", "pki/ca.crt"),
        ("--server-crt", "pki/_signed.server.crt"),
        ("--server-key", "pki/server.key"),
        ("--state-dir", "state"),
        ("--runtime-dir", "run"),
    ];
    for (flag, file) in files {
        cmd.arg(flag).arg(p(file));
    }
    let mut shell = cmd
        .arg("--cgroup-root")
        .arg(format!("aurae-test-tty-{}", std::process::id()))
        .env("PIDFILE", p("pid"))
        .env("AURAED_CNI_CONF_DIR", p("cni"))
        .env_remove("AURAED_AUTHZ_POLICY")
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave))
        .stderr(log)
        .spawn()
        .expect("setsid");
    let config = AuraeConfig::from_path(p("config")).expect("config");
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = Client::connect(&config).await {
            if c.status().await.is_ok() {
                client = Some(c);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let daemon: i32 = std::fs::read_to_string(p("pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("the daemon's pid");
    let log = || std::fs::read_to_string(p("auraed.log")).unwrap_or_default();
    let Some(client) = client else {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon),
            nix::sys::signal::SIGKILL,
        );
        let _ = shell.wait();
        panic!("auraed did not answer: {}", log());
    };

    let reply = client
        .run_executable(common::exe("cat /proc/self/stat"))
        .await
        .expect("run");
    let ours = std::fs::read_to_string(format!("/proc/{daemon}/stat")).expect("daemon stat");
    let leader = std::fs::read_to_string(format!("/proc/{}/stat", shell.id())).expect("shell stat");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::SIGTERM,
    );
    let _ = shell.wait();

    drop(master);
    let (_, _, leader_tty) = stat_fields(&leader);
    assert_ne!(
        leader_tty, 0,
        "the set-up gave the session a controlling terminal"
    );
    let pid = reply
        .proc
        .as_ref()
        .map(|p| p.pid)
        .expect("the workload's pid");
    let (pgrp, session, tty) = stat_fields(&reply.stdout);
    let (daemon_pgrp, daemon_session, daemon_tty) = stat_fields(&ours);
    assert_eq!(pgrp, pid, "the workload leads a process group of its own");
    assert_ne!(pgrp, daemon_pgrp);
    assert_eq!(
        session, daemon_session,
        "and stays in the daemon's session (no setsid per run)"
    );
    assert_eq!(tty, 0, "the workload has no controlling terminal");
    assert_eq!(daemon_tty, 0, "the daemon let go of it: {}", log());
    assert!(
        log().contains("let go of the controlling terminal"),
        "{}",
        log()
    );
}
