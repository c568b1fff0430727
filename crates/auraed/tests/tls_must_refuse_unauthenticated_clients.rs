//! Mutual TLS on every connection: no certificate, a certificate from another
//! CA and an expired certificate are all refused; the daemon's own CA works.

mod common;

use aurae_proto::observe::observe_client::ObserveClient;
use aurae_proto::observe::StatusRequest;
use common::{require_root, uds_channel, TestDaemon};
use time::{Duration, OffsetDateTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

fn ca(d: &TestDaemon) -> Certificate {
    Certificate::from_pem(std::fs::read(d.pki_dir.join("ca.crt")).expect("ca"))
}

/// Status over a channel built with `tls`: Ok when the daemon served it.
async fn status_with(d: &TestDaemon, tls: ClientTlsConfig) -> Result<(), String> {
    let channel = uds_channel(&d.socket, tls)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    ObserveClient::new(channel)
        .status(StatusRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| format!("{s}"))
}

#[tokio::test]
async fn tls_must_accept_a_certificate_of_its_ca() {
    if !require_root("tls_must_accept_a_certificate_of_its_ca") {
        return;
    }
    let d = TestDaemon::start().await;
    let cfg = d.config();
    let id = Identity::from_pem(
        std::fs::read(&cfg.auth.client_crt).expect("crt"),
        std::fs::read(&cfg.auth.client_key).expect("key"),
    );
    status_with(
        &d,
        ClientTlsConfig::new().ca_certificate(ca(&d)).identity(id),
    )
    .await
    .expect("served");
}

#[tokio::test]
async fn tls_must_refuse_a_client_without_certificate() {
    if !require_root("tls_must_refuse_a_client_without_certificate") {
        return;
    }
    let d = TestDaemon::start().await;
    let r = status_with(&d, ClientTlsConfig::new().ca_certificate(ca(&d))).await;
    assert!(r.is_err(), "a client without certificate was served");
}

#[tokio::test]
async fn tls_must_refuse_a_certificate_of_another_ca() {
    if !require_root("tls_must_refuse_a_certificate_of_another_ca") {
        return;
    }
    let d = TestDaemon::start().await;
    let now = OffsetDateTime::now_utc();
    let other = auraed::pki::generate_ca(now - Duration::hours(1), now + Duration::days(10))
        .expect("other ca");
    let (crt, key) = auraed::pki::issue_client_with_validity(
        &other.cert_pem,
        &other.key_pem,
        "admin",
        now - Duration::hours(1),
        now + Duration::days(1),
    )
    .expect("foreign client");
    let r = status_with(
        &d,
        ClientTlsConfig::new()
            .ca_certificate(ca(&d))
            .identity(Identity::from_pem(crt, key)),
    )
    .await;
    assert!(r.is_err(), "a certificate from another CA was served");
}

#[tokio::test]
async fn tls_must_refuse_an_expired_certificate() {
    if !require_root("tls_must_refuse_an_expired_certificate") {
        return;
    }
    let d = TestDaemon::start().await;
    let ca_crt = std::fs::read_to_string(d.pki_dir.join("ca.crt")).expect("ca");
    let ca_key = std::fs::read_to_string(d.pki_dir.join("ca.key")).expect("ca key");
    let now = OffsetDateTime::now_utc();
    let (crt, key) = auraed::pki::issue_client_with_validity(
        &ca_crt,
        &ca_key,
        "admin",
        now - Duration::days(3),
        now - Duration::days(1),
    )
    .expect("expired client");
    let r = status_with(
        &d,
        ClientTlsConfig::new()
            .ca_certificate(ca(&d))
            .identity(Identity::from_pem(crt, key)),
    )
    .await;
    assert!(r.is_err(), "an expired certificate was served");
}
