//! `images.Images` (additive: see proto/images.proto)
use aurae_proto::images::{
    Image, ListImagesRequest, PruneImagesRequest, PruneImagesResponse, PullEvent, PullRequest,
    RemoveImageRequest,
};
use tonic::Streaming;

use crate::{Client, ClientError};

impl Client {
    /// Pulls `reference` into the node's store: per-layer progress events,
    /// then one `Pulled` event.
    pub async fn pull_image(
        &self,
        reference: impl Into<String>,
    ) -> Result<Streaming<PullEvent>, ClientError> {
        Ok(self
            .images()
            .pull(PullRequest {
                reference: reference.into(),
            })
            .await?
            .into_inner())
    }

    /// The images the node's store keeps.
    pub async fn list_images(&self) -> Result<Vec<Image>, ClientError> {
        Ok(self
            .images()
            .list(ListImagesRequest {})
            .await?
            .into_inner()
            .images)
    }

    /// Forgets `reference` and frees what nothing else needs.
    pub async fn remove_image(
        &self,
        reference: impl Into<String>,
    ) -> Result<PruneImagesResponse, ClientError> {
        Ok(self
            .images()
            .remove(RemoveImageRequest {
                reference: reference.into(),
            })
            .await?
            .into_inner())
    }

    /// Frees unused blobs and layers; with `all`, also forgets every image
    /// no running container uses.
    pub async fn prune_images(&self, all: bool) -> Result<PruneImagesResponse, ClientError> {
        Ok(self
            .images()
            .prune(PruneImagesRequest { all })
            .await?
            .into_inner())
    }
}
