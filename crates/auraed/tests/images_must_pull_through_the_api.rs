//! images.Images/Pull over gRPC: progress, then the resolved digest.

mod common;

use aurae_proto::images::pull_event::Event;
use common::{require_registry, TestDaemon, REGISTRY};
use tokio_stream::StreamExt;

#[tokio::test]
async fn pull_must_stream_progress_and_the_digest() {
    if !require_registry("pull_must_stream_progress_and_the_digest") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let mut events = c
        .pull_image(format!("{REGISTRY}/aurae/busybox:latest"))
        .await
        .expect("pull");
    let (mut layers, mut pulled) = (Vec::new(), None);
    while let Some(e) = events.next().await {
        match e.expect("event").event {
            Some(Event::Layer(l)) => layers.push(l),
            Some(Event::Pulled(p)) => pulled = Some(p),
            None => {}
        }
    }
    let p = pulled.expect("a final Pulled event");
    assert!(
        p.manifest_digest.starts_with("sha256:") && p.manifest_digest.len() == 71,
        "{p:?}"
    );
    assert_eq!(p.reference, format!("{REGISTRY}/aurae/busybox:latest"));
    assert!(p.layers >= 1);
    let last = layers.last().expect("progress for the layer");
    assert_eq!(last.done, last.total, "the layer is reported complete");
}

#[tokio::test]
async fn pull_of_an_unknown_image_must_be_not_found() {
    if !require_registry("pull_of_an_unknown_image_must_be_not_found") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let mut events = c
        .pull_image(format!("{REGISTRY}/aurae/no-such-image:latest"))
        .await
        .expect("call");
    let status = loop {
        match events.next().await {
            Some(Err(s)) => break s,
            Some(Ok(_)) => continue,
            None => panic!("the stream ended without an error"),
        }
    };
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    let down = c
        .pull_image("127.0.0.1:5999/aurae/busybox:latest")
        .await
        .expect("call");
    let errors: Vec<_> = down.filter_map(|e| e.err()).collect().await;
    assert_eq!(
        errors.first().map(|s| s.code()),
        Some(tonic::Code::Unavailable),
        "{errors:?}"
    );
}
