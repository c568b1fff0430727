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

#[tokio::test]
async fn list_remove_and_prune_must_manage_the_store_over_grpc() {
    if !require_registry("list_remove_and_prune_must_manage_the_store_over_grpc") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let busybox = format!("{REGISTRY}/aurae/busybox:latest");
    let mut events = c.pull_image(busybox.clone()).await.expect("pull");
    while let Some(e) = events.next().await {
        e.expect("event");
    }
    let images = c.list_images().await.expect("list");
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].reference, busybox);
    assert!(images[0].size > 1_000_000, "{images:?}");
    assert!(images[0].containers.is_empty());

    let nothing = c.prune_images(false).await.expect("prune");
    assert_eq!((nothing.blobs_removed, nothing.layers_removed), (0, 0));
    let missing = c
        .remove_image(format!("{REGISTRY}/aurae/not-pulled:latest"))
        .await
        .expect_err("not stored");
    assert_eq!(
        missing.status().map(|s| s.code()),
        Some(tonic::Code::NotFound),
        "{missing}"
    );
    let bad = c.remove_image("Not A Reference").await.expect_err("bad");
    assert_eq!(
        bad.status().map(|s| s.code()),
        Some(tonic::Code::InvalidArgument),
        "{bad}"
    );

    let removed = c.remove_image(busybox.clone()).await.expect("remove");
    assert_eq!(removed.images_removed, vec![busybox]);
    assert_eq!(removed.layers_removed, 1);
    assert!(removed.bytes_freed > 1_000_000, "{removed:?}");
    assert!(c.list_images().await.expect("list").is_empty());
}
