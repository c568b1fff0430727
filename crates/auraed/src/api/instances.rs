//! `instances.Instances` (Graph, Free) and the conversions used by
//! `runtime.Core/Spawn`: thin handlers over [`Instances`].

use std::sync::Arc;

use aurae_proto::instances::instances_server::Instances as InstancesApi;
use aurae_proto::instances::{FreeRequest, FreeResponse, GraphRequest};
use aurae_proto::meta::{ProcessMeta, Status as MetaStatus};
use aurae_proto::runtime::{
    Cell, CellStatus, Instance, Pod, PodStatus, SpawnRequest, SpawnResponse,
};
use tonic::{Request, Response, Status};

use super::{caller, meta, name_in};
use crate::instances::{GraphNode, Instances, SpawnSpec, Spawned};

pub fn spawn_spec(r: SpawnRequest, caller: String) -> SpawnSpec {
    SpawnSpec {
        name: r.name,
        memory_mib: r.memory_mib,
        vcpus: r.vcpus,
        preload_images: Vec::new(),
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

/// A nested instance's answer to Graph, as the core's node (the inverse
/// of [`instance`]).
pub fn graph_node(i: Instance) -> GraphNode {
    let (name, message) = i.meta.map(|m| (m.name, m.message)).unwrap_or_default();
    GraphNode {
        name,
        message,
        is_root: i.is_root,
        nested: i.nested_instances.into_iter().map(graph_node).collect(),
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

/// RunPod: a fresh instance named after the pod (generated when the pod
/// has no name) with the pod's images handed over, each cell
/// run there through the instance's own RunCell (in order, until one fails
/// to run), the instance freed whatever happens. In a task of its own, so
/// that a client going away cannot leave the instance behind. The answer's
/// `cell_status` is the first cell that did not complete, else the last.
pub async fn run_pod(instances: &Arc<Instances>, req: Request<Pod>) -> Result<PodStatus, Status> {
    let caller = caller(&req);
    let pod = req.into_inner();
    let name = name_in(&pod.meta);
    if pod.cells.is_empty() {
        return Err(Status::invalid_argument(format!(
            "pod {name:?} has no cells: give at least one"
        )));
    }
    let mut images: Vec<String> = Vec::new();
    for c in pod.cells.iter().flat_map(|c| &c.containers) {
        if !images.contains(&c.image) {
            images.push(c.image.clone());
        }
    }
    let spec = SpawnSpec {
        // As a Kubernetes pod is its sandbox: a second pod of a running
        // pod's name is ALREADY_EXISTS, and `aer instance list` shows which
        // instance runs which pod.
        name: name.clone(),
        preload_images: images,
        caller,
        ..Default::default()
    };
    let instances = instances.clone();
    tokio::spawn(async move {
        let spawned = instances.spawn(spec).await?;
        let instance_name = spawned.name.clone();
        let cells = run_cells(&instances, &instance_name, pod.cells).await;
        let graph = instances.graph_of(&instance_name).await;
        if let Err(e) = instances.free(instance_name.clone()).await {
            tracing::warn!(kind = "instance", name = %instance_name, error = %e, "freeing the pod's instance");
        }
        let cell_status = cells?;
        let failed = cell_status.status == MetaStatus::Error as i32;
        Ok(PodStatus {
            meta: meta(name, if failed { "a cell failed" } else { "" }),
            status: if failed { MetaStatus::Error } else { MetaStatus::Complete } as i32,
            spawn_response: Some(spawn_response(spawned)),
            instance: graph.map(instance),
            cell_status: Some(cell_status),
        })
    })
    .await
    .map_err(|e| Status::internal(format!("pod task: {e}")))?
}

async fn run_cells(
    instances: &Instances,
    instance_name: &str,
    cells: Vec<Cell>,
) -> Result<CellStatus, Status> {
    let client = instances.client_of(instance_name).await?;
    let mut last = CellStatus::default();
    for cell in cells {
        last = client.run_cell(cell).await.map_err(|e| match e.status() {
            Some(s) => Status::new(
                s.code(),
                format!("in instance {instance_name}: {}", s.message()),
            ),
            None => Status::unavailable(format!(
                "instance {instance_name}: {}",
                crate::error_chain::chain(&e)
            )),
        })?;
        if last.status != MetaStatus::Complete as i32 {
            break;
        }
    }
    Ok(last)
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
