//! `runtime.Core`: RunExecutable over the executables subsystem, RunCell
//! over the cells subsystem, RunVirtualMachine over the VMs subsystem,
//! Spawn and RunPod over the instances subsystem.

use std::sync::Arc;

use aurae_proto::meta::ProcessMeta;
use aurae_proto::runtime::core_server::Core;
use aurae_proto::runtime::{
    Cell, CellStatus, Executable, ExecutableStatus, Pod, PodStatus, SpawnRequest, SpawnResponse,
    VirtualMachine, VirtualMachineStatus,
};
use tonic::{Request, Response, Status};

use super::{caller, executable_spec, meta, status};
use crate::cells::Cells;
use crate::executables::{Executables, RunRequest, RunResult};
use crate::instances::Instances;
use crate::vms::Vms;

pub struct CoreService {
    executables: Arc<Executables>,
    cells: Cells,
    vms: Arc<Vms>,
    instances: Arc<Instances>,
}

impl CoreService {
    pub fn new(
        executables: Arc<Executables>,
        cells: Cells,
        vms: Arc<Vms>,
        instances: Arc<Instances>,
    ) -> Self {
        Self {
            executables,
            cells,
            vms,
            instances,
        }
    }
}

/// An `Executable` as the executables subsystem takes it.
pub fn run_request(exe: Executable, caller: String) -> RunRequest {
    RunRequest {
        spec: executable_spec(exe),
        caller,
    }
}

/// A run's result as the wire `ExecutableStatus`.
pub fn executable_status(r: RunResult) -> ExecutableStatus {
    ExecutableStatus {
        meta: meta(r.name, r.message),
        proc: r.pid.map(|pid| ProcessMeta { pid }),
        status: status(r.status),
        stdout: r.stdout,
        stderr: r.stderr,
        exit_code: r.exit_code,
    }
}

#[tonic::async_trait]
impl Core for CoreService {
    async fn run_executable(
        &self,
        req: Request<Executable>,
    ) -> Result<Response<ExecutableStatus>, Status> {
        let caller = caller(&req);
        let result = self
            .executables
            .run(run_request(req.into_inner(), caller))
            .await?;
        Ok(Response::new(executable_status(result)))
    }

    async fn run_pod(&self, req: Request<Pod>) -> Result<Response<PodStatus>, Status> {
        super::instances::run_pod(&self.instances, req)
            .await
            .map(Response::new)
    }

    async fn spawn(&self, req: Request<SpawnRequest>) -> Result<Response<SpawnResponse>, Status> {
        super::instances::spawn(&self.instances, req)
            .await
            .map(Response::new)
    }

    async fn run_virtual_machine(
        &self,
        req: Request<VirtualMachine>,
    ) -> Result<Response<VirtualMachineStatus>, Status> {
        super::vms::run_virtual_machine(&self.vms, req)
            .await
            .map(Response::new)
    }

    async fn run_cell(&self, req: Request<Cell>) -> Result<Response<CellStatus>, Status> {
        super::cells::run_cell(&self.cells, req.into_inner())
            .await
            .map(Response::new)
    }
}
