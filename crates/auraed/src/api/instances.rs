//! `instances.Instances` (Graph, Free) and the conversions used by
//! `runtime.Core/Spawn`: thin handlers over [`Instances`].

use std::sync::Arc;

use aurae_proto::instances::instances_server::Instances as InstancesApi;
use aurae_proto::instances::{FreeRequest, FreeResponse, GraphRequest};
use aurae_proto::meta::ProcessMeta;
use aurae_proto::runtime::{Instance, SpawnRequest, SpawnResponse};
use tonic::{Request, Response, Status};

use super::{caller, meta};
use crate::instances::{GraphNode, Instances, SpawnSpec, Spawned};

pub fn spawn_spec(r: SpawnRequest, caller: String) -> SpawnSpec {
    SpawnSpec {
        name: r.name,
        memory_mib: r.memory_mib,
        vcpus: r.vcpus,
        preload: None,
        caller,
    }
}

pub fn spawn_response(s: Spawned) -> SpawnResponse {
    SpawnResponse {
        name: s.name,
        address: s.address,
        proc: Some(ProcessMeta { pid: s.pid }),
    }
}

pub fn instance(g: GraphNode) -> Instance {
    Instance {
        meta: meta(g.name, g.message),
        is_root: g.is_root,
        nested_instances: g.nested.into_iter().map(instance).collect(),
    }
}

pub async fn spawn(
    instances: &Arc<Instances>,
    req: Request<SpawnRequest>,
) -> Result<SpawnResponse, Status> {
    let caller = caller(&req);
    let spawned = instances
        .spawn(spawn_spec(req.into_inner(), caller))
        .await?;
    Ok(spawn_response(spawned))
}

pub struct InstancesService {
    instances: Arc<Instances>,
}

impl InstancesService {
    pub fn new(instances: Arc<Instances>) -> Self {
        Self { instances }
    }
}

#[tonic::async_trait]
impl InstancesApi for InstancesService {
    async fn graph(&self, _req: Request<GraphRequest>) -> Result<Response<Instance>, Status> {
        Ok(Response::new(instance(self.instances.graph().await)))
    }

    async fn free(&self, req: Request<FreeRequest>) -> Result<Response<FreeResponse>, Status> {
        let name = req.into_inner().name;
        self.instances.free(name.clone()).await?;
        Ok(Response::new(FreeResponse {
            meta: meta(name, "freed"),
        }))
    }
}
