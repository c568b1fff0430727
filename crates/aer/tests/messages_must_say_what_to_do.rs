//! What a new user reads when something is in the way: each message names
//! what is missing or unreadable and what to do about it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

/// `nobody` on Debian.
const NOBODY: u32 = 65534;

fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (to run aer as another user), and CI must not skip it");
    }
    eprintln!("skipping {test}: needs root");
    false
}

/// Runs a copy of aer placed in `home` (a 0755 directory of the test):
/// the build's own copy may sit under a directory nobody cannot enter
/// (a clone in a 0700 temp dir, as CI makes).
fn aer_as_nobody(home: &Path, args: &[&str]) -> Output {
    let aer = home.join("aer");
    if !aer.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_aer"), &aer).expect("copy aer");
        std::fs::set_permissions(&aer, std::fs::Permissions::from_mode(0o755)).expect("chmod aer");
    }
    // Another test thread may fork while this one still holds the copy open
    // for writing; the forked child keeps that descriptor until its exec, and
    // an exec of the copy meanwhile fails with ETXTBSY. The window is short.
    let mut tries = 0;
    loop {
        let run = Command::new(&aer)
            .args(args)
            .env_clear()
            .env("HOME", home)
            .env("PATH", "/usr/bin:/bin")
            .uid(NOBODY)
            .gid(NOBODY)
            .output();
        match run {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.expect("run aer"),
        }
    }
}

fn open_dir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
}

#[test]
fn an_unreadable_config_is_explained_not_just_denied() {
    if !require_root("an_unreadable_config_is_explained_not_just_denied") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    open_dir(tmp.path(), 0o755);
    let home = tmp.path().join("home");
    open_dir(&home, 0o755);
    // Like /etc/aurae: a directory only root may enter.
    open_dir(&home.join(".aurae"), 0o700);
    let out = aer_as_nobody(&home, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let config = home.join(".aurae/config");
    let blocked = home.join(".aurae");
    assert!(
        stderr.contains(&format!(
            "{} cannot be read (the directory {} is not accessible to this user): run aer as root",
            config.display(),
            blocked.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--config or $AURAE_CONFIG"), "{stderr}");
}

#[test]
fn a_socket_the_user_may_not_use_is_named_with_its_mode_and_socket_group() {
    if !require_root("a_socket_the_user_may_not_use_is_named_with_its_mode_and_socket_group") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    open_dir(tmp.path(), 0o755);
    // The user's own, readable certificates: the socket is what is in the way.
    let mine = tmp.path().join("mine");
    open_dir(&mine, 0o755);
    let cert = rcgen::generate_simple_self_signed(vec!["server.unsafe.aurae.io".into()])
        .expect("certificate");
    for (name, pem) in [
        ("ca.crt", cert.cert.pem()),
        ("client.crt", cert.cert.pem()),
        ("client.key", cert.signing_key.serialize_pem()),
    ] {
        std::fs::write(mine.join(name), pem).expect("write pem");
        chown_nobody(&mine.join(name));
    }
    let socket = tmp.path().join("aurae.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = mine.join("config");
    std::fs::write(
        &config,
        format!(
            "[auth]\nca_crt = \"{0}/ca.crt\"\nclient_crt = \"{0}/client.crt\"\nclient_key = \"{0}/client.key\"\n\n[system]\nsocket = \"{1}\"\n",
            mine.display(),
            socket.display()
        ),
    )
    .expect("config");
    let out = aer_as_nobody(
        tmp.path(),
        &["status", "--config", config.to_str().expect("utf-8")],
    );
    drop(listener);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "permission denied on the daemon's socket {} (mode 0600, owner root, group root)",
            socket.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--socket-group GROUP"), "{stderr}");
}

#[test]
fn an_unknown_option_of_aer_run_is_a_usage_error_not_the_program() {
    let out = Command::new(env!("CARGO_BIN_EXE_aer"))
        .args(["run", "--nme", "x", "--", "true"])
        .output()
        .expect("run aer");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unexpected argument '--nme'"), "{stderr}");
}
