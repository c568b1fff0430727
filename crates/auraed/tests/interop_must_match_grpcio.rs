//! An independent gRPC implementation (Python grpcio) talks to auraed over
//! the Unix socket with mTLS; its reply must be the exact bytes prost
//! produces for the same message.

mod common;

use std::path::Path;

use aurae_proto::meta::Status;
use aurae_proto::runtime::ExecutableStatus;
use common::{require_root, TestDaemon};
use prost::Message;

/// The first python3 that has grpcio and grpc_tools: the one on PATH, else
/// Debian's (python3-grpcio and python3-grpc-tools install into
/// /usr/bin/python3, which a pyenv or venv python3 earlier on PATH hides).
fn python_with_grpcio() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import grpc, grpc_tools.protoc"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[tokio::test]
async fn grpcio_must_get_the_same_bytes() {
    if !require_root("grpcio_must_get_the_same_bytes") {
        return;
    }
    let Some(python) = python_with_grpcio() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcio_must_get_the_same_bytes: no python3 can import grpc and grpc_tools.protoc; \
             CI must not skip it (.ci/run installs python3-grpcio and python3-grpc-tools)"
        );
        eprintln!(
            "skipping grpcio_must_get_the_same_bytes: apt-get install python3-grpcio python3-grpc-tools"
        );
        return;
    };
    let d = TestDaemon::start().await;
    let cfg = d.config();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(python)
        .arg(manifest.join("tests/interop/grpcio_run_executable.py"))
        .arg(manifest.join("../../proto"))
        .arg(&d.socket)
        .arg(&cfg.auth.ca_crt)
        .arg(&cfg.auth.client_crt)
        .arg(&cfg.auth.client_key)
        .arg("echo 'hello grpcio'")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "grpcio client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("json from the python client");
    let bytes = hex::decode(v["bytes_hex"].as_str().expect("hex")).expect("hex decodes");
    let reply = ExecutableStatus::decode(bytes.as_slice()).expect("prost decodes grpcio's bytes");
    assert_eq!(reply.stdout, "hello grpcio\n");
    assert_eq!(reply.exit_code, "0");
    assert_eq!(reply.status, Status::Complete as i32);
    assert_eq!(v["stdout"], "hello grpcio\n");
    assert_eq!(v["status"], Status::Complete as i32);
    assert_eq!(
        v["pid"].as_i64(),
        reply.proc.as_ref().map(|p| i64::from(p.pid))
    );
    assert!(reply.proc.as_ref().is_some_and(|p| p.pid > 1));
    assert_eq!(
        reply.encode_to_vec(),
        bytes,
        "re-encoding with prost gives grpcio's bytes back"
    );
}
