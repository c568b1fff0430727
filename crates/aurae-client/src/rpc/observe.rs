//! `observe.Observe`
use aurae_proto::observe::{
    GetAuraeDaemonLogStreamRequest, GetSubProcessStreamRequest, LogChannelType, LogItem,
    StatusRequest, StatusResponse,
};
use tonic::Streaming;

use crate::{Client, ClientError};

impl Client {
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        Ok(self
            .observe()
            .status(StatusRequest::default())
            .await?
            .into_inner())
    }

    /// Every log record the daemon emits from now on, until the stream is dropped.
    pub async fn daemon_log_stream(&self) -> Result<Streaming<LogItem>, ClientError> {
        Ok(self
            .observe()
            .get_aurae_daemon_log_stream(GetAuraeDaemonLogStreamRequest {})
            .await?
            .into_inner())
    }

    /// stdout or stderr of a process the daemon started.
    pub async fn sub_process_stream(
        &self,
        pid: i64,
        channel: LogChannelType,
    ) -> Result<Streaming<LogItem>, ClientError> {
        let request = GetSubProcessStreamRequest {
            channel_type: channel as i32,
            process_id: pid,
        };
        Ok(self
            .observe()
            .get_sub_process_stream(request)
            .await?
            .into_inner())
    }
}
