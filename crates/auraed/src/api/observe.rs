//! `observe.Observe`: Status, and the log streams of `crate::observe`
//! converted to `LogItem`s. The streams read the log store only when
//! tonic polls them, so a subscriber that does not read costs a small
//! buffer, and a slow one loses nothing that is retained.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use aurae_proto::meta::AuraeMeta;
use aurae_proto::observe::observe_server::Observe;
use aurae_proto::observe::{
    GetAuraeDaemonLogStreamRequest, GetSubProcessStreamRequest, LogChannelType, LogItem,
    StatusRequest, StatusResponse,
};
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::logs::Stream as Out;
use crate::observe::streams::EntryStream;
use crate::observe::{Observer, WorkloadCounts};
use crate::process::Processes;

type LogStream = Pin<Box<dyn Stream<Item = Result<LogItem, Status>> + Send>>;

pub struct ObserveService {
    instance_name: String,
    started: Instant,
    observer: Observer,
    processes: Processes,
    counts: Vec<Arc<dyn WorkloadCounts>>,
    /// Ends every open stream at daemon shutdown, so that graceful shutdown
    /// does not wait for subscribers that never hang up.
    shutdown: CancellationToken,
}

impl ObserveService {
    pub fn new(instance_name: String, observer: Observer, processes: Processes) -> Self {
        Self {
            instance_name,
            started: Instant::now(),
            observer,
            processes,
            counts: Vec::new(),
            shutdown: CancellationToken::new(),
        }
    }

    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn with_counts(mut self, c: Arc<dyn WorkloadCounts>) -> Self {
        self.counts.push(c);
        self
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "auraed {} up {}s; processes running {}",
            env!("CARGO_PKG_VERSION"),
            self.started.elapsed().as_secs(),
            self.processes.running()
        );
        for c in &self.counts {
            for (label, n) in c.counts() {
                s.push_str(&format!(", {label} {n}"));
            }
        }
        s
    }

    /// The entries as `LogItem`s, ending at daemon shutdown.
    fn items(&self, entries: EntryStream) -> LogStream {
        let shutdown = self.shutdown.clone();
        // Dropped with the stream: memory goes back once subscribers leave.
        let guard = crate::observe::trim::LeaveGuard;
        let items = entries.map(move |e| {
            let _ = &guard;
            e.map(|e| LogItem {
                channel: e.channel,
                line: e.line,
                timestamp: e.timestamp,
            })
            .map_err(Status::from)
        });
        Box::pin(items.take_until(async move { shutdown.cancelled().await }))
    }
}

#[tonic::async_trait]
impl Observe for ObserveService {
    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(StatusResponse {
            meta: Some(AuraeMeta {
                name: self.instance_name.clone(),
                message: self.summary(),
            }),
        }))
    }

    type GetAuraeDaemonLogStreamStream = LogStream;

    async fn get_aurae_daemon_log_stream(
        &self,
        req: Request<GetAuraeDaemonLogStreamRequest>,
    ) -> Result<Response<Self::GetAuraeDaemonLogStreamStream>, Status> {
        let req = req.into_inner();
        let entries = self
            .observer
            .daemon_log(req.tail as usize, req.no_follow)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(self.items(entries)))
    }

    type GetSubProcessStreamStream = LogStream;

    async fn get_sub_process_stream(
        &self,
        req: Request<GetSubProcessStreamRequest>,
    ) -> Result<Response<Self::GetSubProcessStreamStream>, Status> {
        let req = req.into_inner();
        let stream = match LogChannelType::try_from(req.channel_type) {
            Ok(LogChannelType::ChannelStdout) => Out::Stdout,
            Ok(LogChannelType::ChannelStderr) => Out::Stderr,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "channel_type {} is not a known channel: use 0 (stdout) or 1 (stderr)",
                    req.channel_type
                )))
            }
        };
        let entries = self
            .observer
            .process_output(req.process_id, stream, req.no_follow)
            .map_err(Status::from)?;
        Ok(Response::new(self.items(entries)))
    }
}
