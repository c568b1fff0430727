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
        self.daemon_log(0, false).await
    }

    /// The daemon's last `tail` retained records, then (unless `no_follow`)
    /// every record from now on.
    pub async fn daemon_log(
        &self,
        tail: u32,
        no_follow: bool,
    ) -> Result<Streaming<LogItem>, ClientError> {
        Ok(self
            .observe()
            .get_aurae_daemon_log_stream(GetAuraeDaemonLogStreamRequest { tail, no_follow })
            .await?
            .into_inner())
    }

    /// stdout or stderr of a process the daemon started: from the start of
    /// its retained log until the process has ended.
    pub async fn sub_process_stream(
        &self,
        pid: i64,
        channel: LogChannelType,
    ) -> Result<Streaming<LogItem>, ClientError> {
        self.sub_process_output(pid, channel, false).await
    }

    /// Like [`Client::sub_process_stream`]; with `no_follow` the stream ends
    /// at what is written now even while the process still runs.
    pub async fn sub_process_output(
        &self,
        pid: i64,
        channel: LogChannelType,
        no_follow: bool,
    ) -> Result<Streaming<LogItem>, ClientError> {
        let request = GetSubProcessStreamRequest {
            channel_type: channel as i32,
            process_id: pid,
            no_follow,
        };
        Ok(self
            .observe()
            .get_sub_process_stream(request)
            .await?
            .into_inner())
    }
}
