//! A small typed QMP client over the hypervisor's Unix socket: the greeting,
//! capability negotiation, and the handful of commands the daemon needs
//! (query-status, system_powerdown, quit). Written here rather than taken
//! from the `qapi` crate: four commands do not justify its generated schema
//! of the whole QEMU API, and this stays independent of the QEMU version.
//! Events arriving between replies are skipped.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Longest accepted QMP line (replies here are small).
const MAX_LINE: u64 = 1024 * 1024;
/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capability negotiation mode.
    pub async fn connect(path: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path).await?;
        let (r, w) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = timed(qmp.read_message()).await?;
        if greeting.get("QMP").is_none() {
            return Err(invalid(format!("not a QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities").await?;
        Ok(qmp)
    }

    /// The run state (`running`, `paused`, `shutdown`, ...).
    pub async fn status(&mut self) -> std::io::Result<String> {
        let r = self.execute("query-status").await?;
        r.get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("query-status returned {r}")))
    }

    /// Presses the ACPI power button: a guest that handles it powers off.
    pub async fn powerdown(&mut self) -> std::io::Result<()> {
        self.execute("system_powerdown").await.map(|_| ())
    }

    /// Ends QEMU at once (the guest is not asked).
    pub async fn quit(&mut self) -> std::io::Result<()> {
        self.execute("quit").await.map(|_| ())
    }

    /// Runs `command` and returns its `return` value.
    pub async fn execute(&mut self, command: &str) -> std::io::Result<Value> {
        let mut line = serde_json::to_vec(&serde_json::json!({ "execute": command }))?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        timed(async {
            loop {
                let msg = self.read_message().await?;
                if let Some(r) = msg.get("return") {
                    return Ok(r.clone());
                }
                if let Some(e) = msg.get("error") {
                    return Err(invalid(format!("{command}: {e}")));
                }
                // An asynchronous event: not the reply.
            }
        })
        .await
    }

    async fn read_message(&mut self) -> std::io::Result<Value> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the hypervisor closed its QMP socket",
            ));
        }
        serde_json::from_slice(&line).map_err(|e| invalid(format!("bad QMP message: {e}")))
    }
}

async fn timed<T>(f: impl std::future::Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    tokio::time::timeout(COMMAND_TIMEOUT, f)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "QMP did not answer in time")
        })?
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn negotiates_skips_events_and_reads_replies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .expect("greet");
            let mut seen = Vec::new();
            let mut line = String::new();
            while r.read_line(&mut line).await.expect("read") > 0 {
                let v: Value = serde_json::from_str(&line).expect("json");
                let cmd = v["execute"].as_str().expect("execute").to_string();
                line.clear();
                let reply = match cmd.as_str() {
                    "query-status" => "{\"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\", \"running\": true}}\n".to_string(),
                    "bogus" => "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"nope\"}}\n".to_string(),
                    _ => "{\"return\": {}}\n".to_string(),
                };
                seen.push(cmd);
                w.write_all(reply.as_bytes()).await.expect("reply");
            }
            seen
        });
        let mut qmp = Qmp::connect(&path).await.expect("connect");
        assert_eq!(qmp.status().await.expect("status"), "running");
        let err = qmp.execute("bogus").await.expect_err("error reply");
        assert!(err.to_string().contains("nope"), "{err}");
        qmp.powerdown().await.expect("powerdown");
        drop(qmp);
        let seen = server.await.expect("server");
        assert_eq!(
            seen,
            [
                "qmp_capabilities",
                "query-status",
                "bogus",
                "system_powerdown"
            ]
        );
    }
}
