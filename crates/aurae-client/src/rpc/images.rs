//! `images.Images` (additive: see proto/images.proto)
use aurae_proto::images::{PullEvent, PullRequest};
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
}
