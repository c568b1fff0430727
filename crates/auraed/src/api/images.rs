//! `images.Images` (additive): pull ahead of a RunCell, streaming per-layer
//! progress (the store's [`PullProgress`] callbacks and [`PulledImage`]
//! become `PullEvent`s); list, remove and prune the store.

use std::pin::Pin;
use std::sync::Arc;

use aurae_proto::images::images_server::Images;
use aurae_proto::images::pull_event::Event;
use aurae_proto::images::{
    Image, LayerProgress, ListImagesRequest, ListImagesResponse, PruneImagesRequest,
    PruneImagesResponse, PullEvent, PullRequest, Pulled, RemoveImageRequest,
};
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::status::image_status;
use crate::images::{ImageInfo, ImageStore, PruneReport, PullProgress, PulledImage};

type PullStream = Pin<Box<dyn Stream<Item = Result<PullEvent, Status>> + Send>>;

pub struct ImagesService {
    store: Arc<ImageStore>,
}

impl ImagesService {
    pub fn new(store: Arc<ImageStore>) -> Self {
        Self { store }
    }
}

/// Forwards progress into the response stream; progress is advisory, so an
/// event is dropped rather than wait when the client reads slowly.
struct ChannelProgress(mpsc::Sender<Result<PullEvent, Status>>);

impl PullProgress for ChannelProgress {
    fn layer(&self, digest: &str, total: u64, done: u64) {
        let event = Event::Layer(LayerProgress {
            digest: digest.to_string(),
            total,
            done,
        });
        let _ = self.0.try_send(Ok(PullEvent { event: Some(event) }));
    }
}

/// The last event of a successful pull.
fn pulled_event(image: PulledImage) -> PullEvent {
    PullEvent {
        event: Some(Event::Pulled(Pulled {
            reference: image.reference,
            manifest_digest: image.manifest_digest,
            layers: u32::try_from(image.layers.len()).unwrap_or(u32::MAX),
        })),
    }
}

fn image_message(info: ImageInfo) -> Image {
    let r = info.record;
    Image {
        reference: r.reference,
        manifest_digest: r.manifest_digest,
        layers: r.layers,
        size: r.size,
        pulled_at: r.pulled_at,
        containers: info
            .containers
            .iter()
            .map(|c| c.display().to_string())
            .collect(),
    }
}

fn prune_message(report: PruneReport) -> PruneImagesResponse {
    PruneImagesResponse {
        images_removed: report.images_removed,
        blobs_removed: report.blobs_removed,
        layers_removed: report.layers_removed,
        bytes_freed: report.bytes_freed,
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    async fn list(
        &self,
        _req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let images = self.store.list().await.map_err(image_status)?;
        Ok(Response::new(ListImagesResponse {
            images: images.into_iter().map(image_message).collect(),
        }))
    }

    async fn remove(
        &self,
        req: Request<RemoveImageRequest>,
    ) -> Result<Response<PruneImagesResponse>, Status> {
        let reference = req.into_inner().reference;
        let report = self.store.remove(&reference).await.map_err(image_status)?;
        Ok(Response::new(prune_message(report)))
    }

    async fn prune(
        &self,
        req: Request<PruneImagesRequest>,
    ) -> Result<Response<PruneImagesResponse>, Status> {
        let report = self
            .store
            .prune(req.into_inner().all)
            .await
            .map_err(image_status)?;
        Ok(Response::new(prune_message(report)))
    }

    type PullStream = PullStream;

    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let reference = req.into_inner().reference;
        if reference.trim().is_empty() {
            return Err(Status::invalid_argument(
                "reference is empty: give an image such as 127.0.0.1:5000/aurae/busybox:latest",
            ));
        }
        let (tx, rx) = mpsc::channel(256);
        let store = self.store.clone();
        // The pull runs to its end even if the client goes away: a half
        // pulled image is only wasted work, and the next pull reuses it.
        tokio::spawn(async move {
            let progress = ChannelProgress(tx.clone());
            let last = match store.pull(&reference, Some(&progress)).await {
                Ok(image) => Ok(pulled_event(image)),
                Err(e) => Err(image_status(e)),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
