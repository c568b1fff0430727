//! `cells.Cells` (additive: see proto/cells.proto)
use aurae_proto::cells::{
    ExecRequest, ExecResponse, ListCellsRequest, ListCellsResponse, RemoveCellRequest,
    RemoveCellResponse, StopCellRequest, StopCellResponse,
};
use aurae_proto::runtime::{Cell, CellStatus};

use crate::{Client, ClientError};

impl Client {
    /// Running cells with their containers and pids.
    pub async fn list_cells(&self) -> Result<ListCellsResponse, ClientError> {
        Ok(self.cells().list(ListCellsRequest {}).await?.into_inner())
    }

    /// Stops a running cell; its `run_cell` call then returns.
    pub async fn stop_cell(
        &self,
        name: impl Into<String>,
    ) -> Result<StopCellResponse, ClientError> {
        Ok(self
            .cells()
            .stop(StopCellRequest { name: name.into() })
            .await?
            .into_inner())
    }

    /// Starts a detached cell: it stays after the call, until `remove_cell`.
    pub async fn start_cell(&self, cell: Cell) -> Result<CellStatus, ClientError> {
        Ok(self.cells().start(cell).await?.into_inner())
    }

    /// Removes a detached cell; `force` stops a running one first.
    pub async fn remove_cell(
        &self,
        name: impl Into<String>,
        force: bool,
    ) -> Result<RemoveCellResponse, ClientError> {
        Ok(self
            .cells()
            .remove(RemoveCellRequest {
                name: name.into(),
                force,
            })
            .await?
            .into_inner())
    }

    /// Runs a command in a running container and returns its output and exit code.
    pub async fn exec_in_cell(&self, request: ExecRequest) -> Result<ExecResponse, ClientError> {
        Ok(self.cells().exec(request).await?.into_inner())
    }
}
