//! `cells.Cells` (additive, not in the seed) over [`Cells`], and the
//! conversions of RunCell (`runtime.Core`) between the wire and the cells
//! subsystem.

use aurae_proto::cells::cells_server::Cells as CellsApi;
use aurae_proto::cells::{
    ExecRequest as WireExecRequest, ExecResponse, ListCellsRequest, ListCellsResponse,
    RemoveCellRequest, RemoveCellResponse, RunningCell as WireRunningCell, StopCellRequest,
    StopCellResponse,
};
use aurae_proto::meta::{AuraeMeta, ProcessMeta};
use aurae_proto::runtime::{Cell, CellStatus, ContainerStatus};
use tonic::{Request, Response, Status};

use super::{caller, limits_in, limits_out, meta, name_in, status};
use crate::cells::{
    CellError, CellResult, CellSpec, Cells, ContainerResult, ContainerSpec, ExecRequest, PortSpec,
    ProcessOverrides, RunningCell,
};
use crate::validation::validate_name;

/// A `Cell` as the cells subsystem takes it.
pub fn cell_spec(cell: Cell) -> CellSpec {
    CellSpec {
        name: name_in(&cell.meta),
        containers: cell
            .containers
            .into_iter()
            .map(|c| ContainerSpec {
                name: name_in(&c.meta),
                limits: limits_in(c.limits.as_ref()),
                image: c.image,
                process: ProcessOverrides {
                    command: c.command,
                    args: c.args,
                    env: c.env,
                    working_dir: c.working_dir,
                },
            })
            .collect(),
        network: cell.network,
        ports: cell
            .ports
            .into_iter()
            .map(|p| PortSpec {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: p.protocol,
            })
            .collect(),
        limits: limits_in(cell.limits.as_ref()),
    }
}

fn ip_text(ip: Option<std::net::IpAddr>) -> String {
    ip.map(|ip| ip.to_string()).unwrap_or_default()
}

/// One container's result as the wire `ContainerStatus`.
pub fn container_status(c: ContainerResult) -> ContainerStatus {
    ContainerStatus {
        meta: meta(c.name, c.message),
        proc: c.pid.map(|pid| ProcessMeta { pid }),
        status: status(c.status),
        exit_code: c.exit_code,
        limits: limits_out(c.limits),
        oom_killed: c.oom_killed,
    }
}

/// A cell's result as the wire `CellStatus`.
pub fn cell_status(r: CellResult) -> CellStatus {
    CellStatus {
        meta: meta(r.name, r.message),
        status: status(r.status),
        container_statuses: r.containers.into_iter().map(container_status).collect(),
        ip: ip_text(r.ip),
    }
}

/// A running cell as List shows it on the wire.
pub fn running_cell(c: RunningCell) -> WireRunningCell {
    WireRunningCell {
        meta: meta(c.name, c.phase),
        containers: c.containers.into_iter().map(container_status).collect(),
        ip: ip_text(c.ip),
        status: status(c.status),
        detached: c.detached,
        limits: limits_out(c.limits),
    }
}

/// RunCell: runs `cell` to its end (see [`Cells::run`]).
pub async fn run_cell(cells: &Cells, cell: Cell) -> Result<CellStatus, Status> {
    let result = cells.run(cell_spec(cell)).await?;
    Ok(cell_status(result))
}

/// List: the running cells, sorted by name.
pub fn list_cells(cells: &Cells) -> Vec<WireRunningCell> {
    cells.list().into_iter().map(running_cell).collect()
}

/// Stop: stops cell `name` and answers once it is torn down.
pub async fn stop_cell(cells: &Cells, name: &str) -> Result<AuraeMeta, Status> {
    let message = cells.stop(name).await?;
    Ok(AuraeMeta {
        name: name.to_string(),
        message,
    })
}

/// An Exec request as the cells subsystem takes it.
pub fn exec_request(r: WireExecRequest, caller: String) -> ExecRequest {
    ExecRequest {
        cell: r.cell,
        container: r.container,
        command: r.command,
        timeout: (r.timeout_seconds > 0)
            .then(|| std::time::Duration::from_secs(u64::from(r.timeout_seconds))),
        caller,
    }
}

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
            cells: list_cells(&self.cells),
        }))
    }

    async fn stop(
        &self,
        req: Request<StopCellRequest>,
    ) -> Result<Response<StopCellResponse>, Status> {
        let name = req.into_inner().name;
        validate_name("name", &name).map_err(CellError::CellName)?;
        let meta = stop_cell(&self.cells, &name).await?;
        Ok(Response::new(StopCellResponse { meta: Some(meta) }))
    }

    async fn start(&self, req: Request<Cell>) -> Result<Response<CellStatus>, Status> {
        let result = self.cells.start(cell_spec(req.into_inner())).await?;
        Ok(Response::new(cell_status(result)))
    }

    async fn remove(
        &self,
        req: Request<RemoveCellRequest>,
    ) -> Result<Response<RemoveCellResponse>, Status> {
        let RemoveCellRequest { name, force } = req.into_inner();
        validate_name("name", &name).map_err(CellError::CellName)?;
        let message = self.cells.remove(&name, force).await?;
        Ok(Response::new(RemoveCellResponse {
            meta: Some(AuraeMeta { name, message }),
        }))
    }

    async fn exec(&self, req: Request<WireExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let caller = caller(&req);
        let r = self
            .cells
            .exec(exec_request(req.into_inner(), caller))
            .await?;
        Ok(Response::new(ExecResponse {
            exit_code: r.exit_code,
            stdout: r.stdout,
            stderr: r.stderr,
            proc: Some(ProcessMeta { pid: r.pid }),
            timed_out: r.timed_out,
        }))
    }
}
