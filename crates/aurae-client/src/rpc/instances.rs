//! `instances.Instances`
use aurae_proto::instances::{FreeRequest, FreeResponse, GraphRequest};
use aurae_proto::runtime::Instance;

use crate::{Client, ClientError};

impl Client {
    /// The daemon with its spawned instances, recursively.
    pub async fn instance_graph(&self) -> Result<Instance, ClientError> {
        Ok(self.instances().graph(GraphRequest {}).await?.into_inner())
    }

    /// Stops a spawned instance and removes everything of it.
    pub async fn free_instance(&self, name: &str) -> Result<FreeResponse, ClientError> {
        let request = FreeRequest {
            name: name.to_string(),
        };
        Ok(self.instances().free(request).await?.into_inner())
    }
}
