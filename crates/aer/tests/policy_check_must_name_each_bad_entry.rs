//! `aer policy check FILE` checks a policy without a daemon: "ok", or one
//! line per bad entry and exit 1.

use std::process::{Command, Output};

fn aer_check(file: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aer"))
        .args(["policy", "check"])
        .arg(file)
        .output()
        .expect("run aer")
}

#[test]
fn a_good_policy_is_ok() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("authz.toml");
    std::fs::write(
        &p,
        "[[allow]]\nidentities = [\"ci\"]\nmethods = [\"runtime.Core/RunExecutable\", \"vms.Vms\", \"observe.Observe\"]\n",
    )
    .expect("write");
    let out = aer_check(&p);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn each_bad_entry_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("authz.toml");
    std::fs::write(
        &p,
        "[[allow]]\nidentities = [\"ci\"]\nmethods = [\"runtime.Core/RunExecutabel\", \"cells.Cels\"]\n",
    )
    .expect("write");
    let out = aer_check(&p);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let path = p.display();
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!("aer: {path}: rule 1: unknown method \"runtime.Core/RunExecutabel\": did you mean \"runtime.Core/RunExecutable\"?"),
            format!("aer: {path}: rule 1: unknown service \"cells.Cels\": did you mean \"cells.Cells\"?"),
        ]
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let out = aer_check(std::path::Path::new("/nonexistent/authz.toml"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reading authorization policy /nonexistent/authz.toml"),
        "{stderr}"
    );
}
