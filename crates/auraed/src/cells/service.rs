//! `cells.Cells` (additive, not in the seed): thin handlers over [`Cells`].

use aurae_proto::cells::cells_server::Cells as CellsApi;
use aurae_proto::cells::{ListCellsRequest, ListCellsResponse, StopCellRequest, StopCellResponse};
use tonic::{Request, Response, Status};

use super::error::CellError;
use super::Cells;
use crate::validation::validate_name;

pub struct CellsService {
    cells: Cells,
}

impl CellsService {
    pub fn new(cells: Cells) -> Self {
        Self { cells }
    }
}

#[tonic::async_trait]
impl CellsApi for CellsService {
    async fn list(
        &self,
        _req: Request<ListCellsRequest>,
    ) -> Result<Response<ListCellsResponse>, Status> {
        Ok(Response::new(ListCellsResponse {
            cells: self.cells.list(),
        }))
    }

    async fn stop(
        &self,
        req: Request<StopCellRequest>,
    ) -> Result<Response<StopCellResponse>, Status> {
        let name = req.into_inner().name;
        validate_name("name", &name).map_err(CellError::CellName)?;
        let meta = self.cells.stop(&name).await?;
        Ok(Response::new(StopCellResponse { meta: Some(meta) }))
    }
}
