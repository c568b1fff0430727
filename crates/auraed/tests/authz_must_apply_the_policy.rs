//! Authorization by client identity, from a policy file.

mod common;

use aurae_proto::runtime::Executable;
use common::{require_root, TestDaemon};

const POLICY: &str = r#"
[[allow]]
identities = ["admin"]
methods = ["*"]

[[allow]]
identities = ["viewer"]
methods = ["observe.Observe"]
"#;

fn echo() -> Executable {
    Executable {
        command: "echo hi".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn authz_must_allow_and_deny_by_identity() {
    if !require_root("authz_must_allow_and_deny_by_identity") {
        return;
    }
    let d = TestDaemon::builder().policy(POLICY).start().await;

    let admin = d.client().await;
    assert_eq!(
        admin
            .run_executable(echo())
            .await
            .expect("admin may run")
            .stdout,
        "hi\n"
    );

    let viewer = d.client_as("viewer").await;
    viewer
        .status()
        .await
        .expect("viewer may call observe.Observe");
    let err = viewer
        .run_executable(echo())
        .await
        .expect_err("viewer may not run");
    let status = err.status().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("\"viewer\""),
        "names the identity: {}",
        status.message()
    );
    assert!(
        status.message().contains("/runtime.Core/RunExecutable"),
        "names the method: {}",
        status.message()
    );

    let stranger = d.client_as("mallory").await;
    let err = stranger
        .status()
        .await
        .expect_err("unlisted identity is denied");
    assert_eq!(
        err.status().map(|s| s.code()),
        Some(tonic::Code::PermissionDenied)
    );

    // Health checks stay open to every authenticated identity.
    let mut health = tonic_health::pb::health_client::HealthClient::new(stranger.channel());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health is open");
}

#[tokio::test]
async fn authz_must_refuse_to_start_with_a_broken_policy() {
    if !require_root("authz_must_refuse_to_start_with_a_broken_policy") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("authz.toml");
    std::fs::write(
        &policy,
        "[[allow]]\nidentities = [\"a\"]\nmethods = [\"Core\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auraed"))
        .arg("--authz-policy")
        .arg(&policy)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--ca-crt")
        .arg(dir.path().join("missing-ca.crt"))
        .output()
        .expect("run auraed");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rule 1: method \"Core\""), "{stderr}");
}

#[tokio::test]
async fn authz_must_say_once_why_a_missing_policy_cannot_be_read() {
    if !require_root("authz_must_say_once_why_a_missing_policy_cannot_be_read") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("nonexistent.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auraed"))
        .arg("--authz-policy")
        .arg(&policy)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--ca-crt")
        .arg(dir.path().join("missing-ca.crt"))
        .output()
        .expect("run auraed");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    let os = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
    assert_eq!(
        last,
        format!(
            "auraed: reading authorization policy {}: {os}",
            policy.display()
        ),
        "{stderr}"
    );
}
