//! Health, reflection, the socket's mode and life cycle, graceful shutdown.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{require_root, TestDaemon};
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[tokio::test]
async fn health_and_reflection_must_answer() {
    if !require_root("health_and_reflection_must_answer") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(c.channel());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "runtime.Core".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut refl = ServerReflectionClient::new(c.channel());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream.next().await.expect("a response").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected {resp:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for svc in ["runtime.Core", "observe.Observe", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == svc),
            "{svc} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn socket_must_be_private_and_removed_at_shutdown() {
    if !require_root("socket_must_be_private_and_removed_at_shutdown") {
        return;
    }
    let mut d = TestDaemon::start().await;
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let status = d.stop().expect("exit status");
    assert!(status.success(), "graceful exit: {status}\n{}", d.log());
    assert!(!d.socket.exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn stale_socket_must_be_replaced_but_a_live_one_kept() {
    if !require_root("stale_socket_must_be_replaced_but_a_live_one_kept") {
        return;
    }
    let mut d = TestDaemon::start().await;
    // A second daemon on a socket that answers must refuse to start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auraed"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("--ca-crt")
        .arg(d.pki_dir.join("ca.crt"))
        .arg("--server-crt")
        .arg(d.pki_dir.join("_signed.server.crt"))
        .arg("--server-key")
        .arg(d.pki_dir.join("server.key"))
        .arg("--state-dir")
        .arg(d.dir.path().join("state2"))
        .arg("--runtime-dir")
        .arg(d.dir.path().join("run2"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another auraed is answering"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.client()
        .await
        .status()
        .await
        .expect("the first daemon still serves");

    // After a crash the socket file stays behind; the next start replaces it.
    d.kill9();
    assert!(d.socket.exists());
    d.restart().await;
    d.client()
        .await
        .status()
        .await
        .expect("served after replacing the stale socket");
}

#[tokio::test]
async fn shutdown_must_stop_running_workloads() {
    if !require_root("shutdown_must_stop_running_workloads") {
        return;
    }
    let mut d = TestDaemon::start().await;
    let c = d.client().await;
    let mut core = c.core();
    let _call = tokio::spawn(async move {
        core.run_executable(aurae_proto::runtime::Executable {
            command: "sleep 1000".into(),
            ..Default::default()
        })
        .await
    });
    assert!(common::eventually(10, || common::exec_pids(&d).len() == 1).await);
    let pid = common::exec_pids(&d)[0];
    let status = d.stop().expect("exit");
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(!common::alive(pid), "workload {pid} outlived the daemon");
    assert!(common::exec_cgroups(&d).is_empty());
}
