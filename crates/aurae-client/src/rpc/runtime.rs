//! `runtime.Core`
use aurae_proto::runtime::{
    Cell, CellStatus, Executable, ExecutableStatus, Pod, PodStatus, SpawnRequest, SpawnResponse,
    VirtualMachine, VirtualMachineStatus,
};

use crate::{Client, ClientError};

impl Client {
    /// Runs `executable` to its end and returns its output and exit code.
    pub async fn run_executable(
        &self,
        executable: Executable,
    ) -> Result<ExecutableStatus, ClientError> {
        Ok(self.core().run_executable(executable).await?.into_inner())
    }

    /// Runs a cell; returns when the cell stops.
    pub async fn run_cell(&self, cell: Cell) -> Result<CellStatus, ClientError> {
        Ok(self.core().run_cell(cell).await?.into_inner())
    }

    pub async fn run_pod(&self, pod: Pod) -> Result<PodStatus, ClientError> {
        Ok(self.core().run_pod(pod).await?.into_inner())
    }

    pub async fn spawn(&self, request: SpawnRequest) -> Result<SpawnResponse, ClientError> {
        Ok(self.core().spawn(request).await?.into_inner())
    }

    pub async fn run_virtual_machine(
        &self,
        vm: VirtualMachine,
    ) -> Result<VirtualMachineStatus, ClientError> {
        Ok(self.core().run_virtual_machine(vm).await?.into_inner())
    }
}
