//! `observe.Observe`: thin handlers over `DaemonLog` and `ProcessOutputs`,
//! converting their records and lines to `LogItem`s.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use aurae_proto::meta::AuraeMeta;
use aurae_proto::observe::observe_server::Observe;
use aurae_proto::observe::{
    GetAuraeDaemonLogStreamRequest, GetSubProcessStreamRequest, LogChannelType, LogItem,
    StatusRequest, StatusResponse,
};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::observe::daemon_log::{unix_nanos_now, DaemonLog};
use crate::observe::output::{Channel, LiveItem, ProcessOutputs};
use crate::observe::WorkloadCounts;

type LogStream = Pin<Box<dyn Stream<Item = Result<LogItem, Status>> + Send>>;

pub struct ObserveService {
    instance_name: String,
    started: Instant,
    log: DaemonLog,
    outputs: Arc<ProcessOutputs>,
    counts: Vec<Arc<dyn WorkloadCounts>>,
    /// Ends every open stream at daemon shutdown, so that graceful shutdown
    /// does not wait for subscribers that never hang up.
    shutdown: CancellationToken,
}

impl ObserveService {
    pub fn new(instance_name: String, log: DaemonLog, outputs: Arc<ProcessOutputs>) -> Self {
        Self {
            instance_name,
            started: Instant::now(),
            log,
            outputs,
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
            self.outputs.running()
        );
        for c in &self.counts {
            for (label, n) in c.counts() {
                s.push_str(&format!(", {label} {n}"));
            }
        }
        s
    }
}

fn lost_item(channel: &str, n: u64, what: &str) -> LogItem {
    LogItem {
        channel: channel.to_string(),
        line: format!("aurae: this subscriber fell behind and lost {n} {what}"),
        timestamp: unix_nanos_now(),
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
        _req: Request<GetAuraeDaemonLogStreamRequest>,
    ) -> Result<Response<Self::GetAuraeDaemonLogStreamStream>, Status> {
        let mut rx = self.log.subscribe();
        let stream = async_stream(self.shutdown.clone(), move |tx| async move {
            loop {
                let item = match rx.recv().await {
                    Ok(r) => LogItem {
                        channel: r.channel,
                        line: r.line,
                        timestamp: r.timestamp,
                    },
                    Err(RecvError::Lagged(n)) => {
                        lost_item("WARN aurae.observe", n, "daemon log records")
                    }
                    Err(RecvError::Closed) => return,
                };
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    type GetSubProcessStreamStream = LogStream;

    async fn get_sub_process_stream(
        &self,
        req: Request<GetSubProcessStreamRequest>,
    ) -> Result<Response<Self::GetSubProcessStreamStream>, Status> {
        let req = req.into_inner();
        let channel = match LogChannelType::try_from(req.channel_type) {
            Ok(LogChannelType::ChannelStdout) => Channel::Stdout,
            Ok(LogChannelType::ChannelStderr) => Channel::Stderr,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "channel_type {} is not a known channel: use 0 (stdout) or 1 (stderr)",
                    req.channel_type
                )))
            }
        };
        let pid = i32::try_from(req.process_id).map_err(|_| {
            Status::invalid_argument(format!("process_id {} is not a valid pid", req.process_id))
        })?;
        let output = self.outputs.get(pid).ok_or_else(|| {
            Status::not_found(format!(
                "no process with pid {pid} was started by this daemon (or its output is no longer kept)"
            ))
        })?;
        let sub = output.channel(channel).subscribe();
        let name = channel.as_str();
        let stream = async_stream(self.shutdown.clone(), move |tx| async move {
            for l in sub.backlog {
                let item = LogItem {
                    channel: name.to_string(),
                    line: l.line,
                    timestamp: l.timestamp,
                };
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
            let Some(mut rx) = sub.live else { return };
            loop {
                let item = match rx.recv().await {
                    Ok(LiveItem::Line(l)) => LogItem {
                        channel: name.to_string(),
                        line: l.line.clone(),
                        timestamp: l.timestamp,
                    },
                    Ok(LiveItem::End) | Err(RecvError::Closed) => return,
                    Err(RecvError::Lagged(n)) => lost_item(name, n, "lines"),
                };
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// Runs `producer` in its own task, feeding a small channel the response streams from;
/// the task stops as soon as the client goes away (send fails) or the daemon shuts down.
fn async_stream<F, Fut>(shutdown: CancellationToken, producer: F) -> LogStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<LogItem, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let producer = producer(tx);
    tokio::spawn(async move {
        tokio::select! {
            _ = producer => {}
            _ = shutdown.cancelled() => {}
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
