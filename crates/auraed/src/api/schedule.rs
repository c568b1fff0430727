//! `schedule.Schedule` and `schedule.ScheduleExecutable`: thin handlers over
//! [`Schedule`].

use std::sync::Arc;

use aurae_proto::runtime::Executable;
use aurae_proto::schedule::schedule_executable_server::ScheduleExecutable;
use aurae_proto::schedule::schedule_server::Schedule as ScheduleApi;
use aurae_proto::schedule::{
    ExecutableDestroyResponse, ExecutableDisableResponse, ExecutableEnableResponse,
    ShowDisabledRequest, ShowDisabledResponse, ShowEnabledRequest, ShowEnabledResponse,
};
use tonic::{Request, Response, Status};

use super::{executable_spec, limits_out, meta, name_in};
use crate::schedule::{ListedUnit, Schedule};

/// A listed unit as the wire `Executable`, its state in `meta.message`.
pub fn listed_executable(u: ListedUnit) -> Executable {
    Executable {
        meta: meta(u.spec.name, u.message),
        command: u.spec.command,
        comment: u.spec.comment,
        limits: limits_out(u.spec.limits),
        user: u.spec.user,
        group: u.spec.group,
    }
}

pub struct ScheduleService {
    schedule: Arc<Schedule>,
}

impl ScheduleService {
    pub fn new(schedule: Arc<Schedule>) -> Self {
        Self { schedule }
    }

    fn list(&self, enabled: bool) -> Vec<Executable> {
        self.schedule
            .list(enabled)
            .into_iter()
            .map(listed_executable)
            .collect()
    }
}

#[tonic::async_trait]
impl ScheduleApi for ScheduleService {
    async fn show_enabled(
        &self,
        _req: Request<ShowEnabledRequest>,
    ) -> Result<Response<ShowEnabledResponse>, Status> {
        let executables = self.list(true);
        let meta = meta("", format!("{} enabled", executables.len()));
        Ok(Response::new(ShowEnabledResponse { meta, executables }))
    }

    async fn show_disabled(
        &self,
        _req: Request<ShowDisabledRequest>,
    ) -> Result<Response<ShowDisabledResponse>, Status> {
        let executables = self.list(false);
        let meta = meta("", format!("{} disabled", executables.len()));
        Ok(Response::new(ShowDisabledResponse { meta, executables }))
    }
}

pub struct ScheduleExecutableService {
    schedule: Arc<Schedule>,
}

impl ScheduleExecutableService {
    pub fn new(schedule: Arc<Schedule>) -> Self {
        Self { schedule }
    }
}

#[tonic::async_trait]
impl ScheduleExecutable for ScheduleExecutableService {
    async fn enable(
        &self,
        req: Request<Executable>,
    ) -> Result<Response<ExecutableEnableResponse>, Status> {
        let unit = executable_spec(req.into_inner());
        let name = unit.name.clone();
        let message = self.schedule.enable(unit).await?;
        Ok(Response::new(ExecutableEnableResponse {
            meta: meta(name, message),
        }))
    }

    async fn disable(
        &self,
        req: Request<Executable>,
    ) -> Result<Response<ExecutableDisableResponse>, Status> {
        let name = name_in(&req.into_inner().meta);
        let message = self.schedule.disable(name.clone()).await?;
        Ok(Response::new(ExecutableDisableResponse {
            meta: meta(name, message),
        }))
    }

    async fn destroy(
        &self,
        req: Request<Executable>,
    ) -> Result<Response<ExecutableDestroyResponse>, Status> {
        let name = name_in(&req.into_inner().meta);
        let message = self.schedule.destroy(name.clone()).await?;
        Ok(Response::new(ExecutableDestroyResponse {
            meta: meta(name, message),
        }))
    }
}
