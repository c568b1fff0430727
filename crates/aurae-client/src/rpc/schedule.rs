//! `schedule.Schedule` and `schedule.ScheduleExecutable`
use aurae_proto::runtime::Executable;
use aurae_proto::schedule::{
    ExecutableDestroyResponse, ExecutableDisableResponse, ExecutableEnableResponse,
    ShowDisabledRequest, ShowDisabledResponse, ShowEnabledRequest, ShowEnabledResponse,
};

use crate::{Client, ClientError};

impl Client {
    pub async fn enable(
        &self,
        executable: Executable,
    ) -> Result<ExecutableEnableResponse, ClientError> {
        Ok(self
            .schedule_executable()
            .enable(executable)
            .await?
            .into_inner())
    }

    pub async fn disable(
        &self,
        executable: Executable,
    ) -> Result<ExecutableDisableResponse, ClientError> {
        Ok(self
            .schedule_executable()
            .disable(executable)
            .await?
            .into_inner())
    }

    pub async fn destroy(
        &self,
        executable: Executable,
    ) -> Result<ExecutableDestroyResponse, ClientError> {
        Ok(self
            .schedule_executable()
            .destroy(executable)
            .await?
            .into_inner())
    }

    pub async fn show_enabled(&self) -> Result<ShowEnabledResponse, ClientError> {
        Ok(self
            .schedule()
            .show_enabled(ShowEnabledRequest::default())
            .await?
            .into_inner())
    }

    pub async fn show_disabled(&self) -> Result<ShowDisabledResponse, ClientError> {
        Ok(self
            .schedule()
            .show_disabled(ShowDisabledRequest::default())
            .await?
            .into_inner())
    }
}
