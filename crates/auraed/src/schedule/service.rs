//! `schedule.Schedule` and `schedule.ScheduleExecutable`: thin handlers over
//! [`Schedule`](super::Schedule).

use std::sync::Arc;

use aurae_proto::meta::AuraeMeta;
use aurae_proto::runtime::Executable;
use aurae_proto::schedule::schedule_executable_server::ScheduleExecutable;
use aurae_proto::schedule::schedule_server::Schedule as ScheduleApi;
use aurae_proto::schedule::{
    ExecutableDestroyResponse, ExecutableDisableResponse, ExecutableEnableResponse,
    ShowDisabledRequest, ShowDisabledResponse, ShowEnabledRequest, ShowEnabledResponse,
};
use tonic::{Request, Response, Status};

use super::Schedule;

/// The response meta: the request's name and the call's outcome.
fn meta(name: String, message: String) -> Option<AuraeMeta> {
    Some(AuraeMeta { name, message })
}

fn name_in(exe: &Executable) -> String {
    exe.meta
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

pub struct ScheduleService {
    schedule: Arc<Schedule>,
}

impl ScheduleService {
    pub fn new(schedule: Arc<Schedule>) -> Self {
        Self { schedule }
    }

    fn summary(&self, listed: usize, what: &str) -> Option<AuraeMeta> {
        Some(AuraeMeta {
            name: String::new(),
            message: format!("{listed} {what}"),
        })
    }
}

#[tonic::async_trait]
impl ScheduleApi for ScheduleService {
    async fn show_enabled(
        &self,
        _req: Request<ShowEnabledRequest>,
    ) -> Result<Response<ShowEnabledResponse>, Status> {
        let executables = self.schedule.list(true);
        let meta = self.summary(executables.len(), "enabled");
        Ok(Response::new(ShowEnabledResponse { meta, executables }))
    }

    async fn show_disabled(
        &self,
        _req: Request<ShowDisabledRequest>,
    ) -> Result<Response<ShowDisabledResponse>, Status> {
        let executables = self.schedule.list(false);
        let meta = self.summary(executables.len(), "disabled");
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
        let exe = req.into_inner();
        let name = name_in(&exe);
        let message = self.schedule.enable(exe).await?;
        Ok(Response::new(ExecutableEnableResponse {
            meta: meta(name, message),
        }))
    }

    async fn disable(
        &self,
        req: Request<Executable>,
    ) -> Result<Response<ExecutableDisableResponse>, Status> {
        let exe = req.into_inner();
        let name = name_in(&exe);
        let message = self.schedule.disable(exe).await?;
        Ok(Response::new(ExecutableDisableResponse {
            meta: meta(name, message),
        }))
    }

    async fn destroy(
        &self,
        req: Request<Executable>,
    ) -> Result<Response<ExecutableDestroyResponse>, Status> {
        let exe = req.into_inner();
        let name = name_in(&exe);
        let message = self.schedule.destroy(exe).await?;
        Ok(Response::new(ExecutableDestroyResponse {
            meta: meta(name, message),
        }))
    }
}
