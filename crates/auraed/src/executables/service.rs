//! `runtime.Core`: thin handlers over the executables and cells subsystems.
//! RunPod, Spawn and RunVirtualMachine answer UNIMPLEMENTED until their
//! subsystems land.

use std::sync::Arc;

use aurae_proto::runtime::core_server::Core;
use aurae_proto::runtime::{
    Cell, CellStatus, Executable, ExecutableStatus, Pod, PodStatus, SpawnRequest, SpawnResponse,
    VirtualMachine, VirtualMachineStatus,
};
use tonic::{Request, Response, Status};

use super::Executables;
use crate::cells::Cells;

pub struct CoreService {
    executables: Arc<Executables>,
    cells: Cells,
}

impl CoreService {
    pub fn new(executables: Arc<Executables>, cells: Cells) -> Self {
        Self { executables, cells }
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not implemented by this auraed yet"))
}

#[tonic::async_trait]
impl Core for CoreService {
    async fn run_executable(
        &self,
        req: Request<Executable>,
    ) -> Result<Response<ExecutableStatus>, Status> {
        self.executables
            .run(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn run_pod(&self, _req: Request<Pod>) -> Result<Response<PodStatus>, Status> {
        Err(not_yet("runtime.Core/RunPod"))
    }

    async fn spawn(&self, _req: Request<SpawnRequest>) -> Result<Response<SpawnResponse>, Status> {
        Err(not_yet("runtime.Core/Spawn"))
    }

    async fn run_virtual_machine(
        &self,
        _req: Request<VirtualMachine>,
    ) -> Result<Response<VirtualMachineStatus>, Status> {
        Err(not_yet("runtime.Core/RunVirtualMachine"))
    }

    async fn run_cell(&self, req: Request<Cell>) -> Result<Response<CellStatus>, Status> {
        self.cells.run(req.into_inner()).await.map(Response::new)
    }
}
