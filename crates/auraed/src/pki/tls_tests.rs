//! The certificates of `init` in a real mTLS handshake: a tonic server on a
//! temp Unix socket, reached through aurae-client with the written config.

use std::path::Path;

use aurae_client::{AuraeConfig, Client};
use time::{Duration, OffsetDateTime};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::*;

/// Serves the health service with the server identity in `pki_dir`,
/// requiring client certificates from its CA.
fn serve(pki_dir: &Path, socket: &Path) -> tokio::task::JoinHandle<()> {
    let read = |f: &str| std::fs::read_to_string(pki_dir.join(f)).expect("read pki file");
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(SERVER_CRT), read(SERVER_KEY)))
        .client_ca_root(Certificate::from_pem(read(CA_CRT)));
    let listener = tokio::net::UnixListener::bind(socket).expect("bind");
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = Server::builder()
        .tls_config(tls)
        .expect("tls")
        .add_service(health);
    tokio::spawn(async move {
        server
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await
            .expect("serve");
    })
}

async fn check(config: &AuraeConfig) -> Result<(), String> {
    let client = Client::connect(config)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(client.channel())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e:?}"))
}

#[tokio::test]
async fn init_material_completes_an_mtls_handshake_and_expired_or_foreign_clients_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = PkiInitOptions::for_home(&dir.path().join("home"));
    opts.pki_dir = dir.path().join("pki");
    opts.socket = dir.path().join("aurae.sock");
    init(&opts).expect("init");
    let server = serve(&opts.pki_dir, &opts.socket);

    let config = AuraeConfig::from_path(&opts.config_path).expect("config written by init");
    check(&config).await.expect("the admin client gets through");

    let now = OffsetDateTime::now_utc();
    let ca_pem = std::fs::read_to_string(opts.pki_dir.join(CA_CRT)).expect("ca");
    let ca_key = std::fs::read_to_string(opts.pki_dir.join(CA_KEY)).expect("ca key");
    let (cert, key) = issue_client_with_validity(
        &ca_pem,
        &ca_key,
        "late",
        now - Duration::days(2),
        now - Duration::days(1),
    )
    .expect("expired cert");
    let mut expired = config.clone();
    expired.auth.client_crt = dir.path().join("late.crt");
    expired.auth.client_key = dir.path().join("late.key");
    std::fs::write(&expired.auth.client_crt, cert).expect("write");
    std::fs::write(&expired.auth.client_key, key).expect("write");
    assert!(
        check(&expired).await.is_err(),
        "an expired client certificate was accepted"
    );

    let other = generate_ca(now - Duration::days(1), now + Duration::days(1)).expect("ca");
    let (cert, key) = issue_client_with_validity(
        &other.cert_pem,
        &other.key_pem,
        "mallory",
        now - Duration::days(1),
        now + Duration::days(1),
    )
    .expect("foreign cert");
    let mut foreign = config.clone();
    foreign.auth.client_crt = dir.path().join("mallory.crt");
    foreign.auth.client_key = dir.path().join("mallory.key");
    std::fs::write(&foreign.auth.client_crt, cert).expect("write");
    std::fs::write(&foreign.auth.client_key, key).expect("write");
    assert!(
        check(&foreign).await.is_err(),
        "a client of another CA was accepted"
    );

    // The client must also verify the server's name.
    let mut wrong_name = config.clone();
    wrong_name.system.server_name = Some("not-the-server.example".into());
    assert!(
        check(&wrong_name).await.is_err(),
        "a server name outside the certificate was accepted"
    );

    server.abort();
}
