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
    assert!(
        d.cgroup_dirs().is_empty(),
        "cgroups left at shutdown: {:?}",
        d.cgroup_dirs()
    );
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
    assert!(
        d.cgroup_dirs().is_empty(),
        "cgroups left at shutdown: {:?}",
        d.cgroup_dirs()
    );
}

#[tokio::test]
async fn socket_group_must_make_it_0660() {
    if !require_root("socket_group_must_make_it_0660") {
        return;
    }
    let d = TestDaemon::builder()
        .arg("--socket-group")
        .arg("root")
        .start()
        .await;
    let meta = std::fs::metadata(&d.socket).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 0);
}

#[tokio::test]
async fn tcp_listener_must_require_mutual_tls_too() {
    if !require_root("tcp_listener_must_require_mutual_tls_too") {
        return;
    }
    // A free port: bind, note it, release it for the daemon.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = TestDaemon::builder()
        .arg("--listen")
        .arg(addr.clone())
        .start()
        .await;
    let mut cfg = d.config();
    cfg.system.socket = None;
    cfg.system.address = Some(addr.clone());
    let c = aurae_client::Client::connect(&cfg)
        .await
        .expect("mTLS over TCP");
    let r = c
        .run_executable(aurae_proto::runtime::Executable {
            command: "echo tcp".into(),
            ..Default::default()
        })
        .await
        .expect("RunExecutable over TCP");
    assert_eq!(r.stdout, "tcp\n");

    let ca = tonic::transport::Certificate::from_pem(
        std::fs::read(d.pki_dir.join("ca.crt")).expect("ca"),
    );
    let no_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("server.unsafe.aurae.io");
    let refused = async {
        let ch = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| e.to_string())?
            .tls_config(no_cert)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        aurae_proto::observe::observe_client::ObserveClient::new(ch)
            .status(aurae_proto::observe::StatusRequest::default())
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    assert!(
        refused.is_err(),
        "a client without certificate was served over TCP"
    );
}

#[tokio::test]
async fn oversized_requests_must_get_resource_exhausted() {
    if !require_root("oversized_requests_must_get_resource_exhausted") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let err = c
        .run_executable(aurae_proto::runtime::Executable {
            command: format!("echo {}", "x".repeat(5 << 20)),
            ..Default::default()
        })
        .await
        .expect_err("a 5 MiB request is over the limit");
    let status = err.status().expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("request too large"),
        "{}",
        status.message()
    );
    // The connection stays usable.
    c.status().await.expect("Status after the refused request");
}
