//! A workload's output pipes into its log: one future reads both pipes and
//! appends every read to the log at once (nothing is held back for a reader
//! or a reply), until both pipes reach their end or it is told to stop
//! waiting for them. The task that owns the workload polls it alongside its
//! wait for the exit ([`OutputLog::alongside`]).

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::exit::ExitKind;
use super::supervise::{end_marker, DRAIN_TIMEOUT};
use crate::logs::{Kind, LogStore, LogWriter, Stream};

/// A new log for one run of a workload, and its writer.
pub(crate) fn open_log(
    logs: &LogStore,
    kind: Kind,
    name: &str,
) -> std::io::Result<(PathBuf, LogWriter)> {
    let dir = blocking_io(|| logs.create(kind, name))?;
    let writer = LogWriter::fresh(&dir, logs.limits());
    Ok((dir, writer))
}

/// A workload's output flowing into its log, from its start to the end marker.
pub(crate) struct OutputLog {
    pump: Pump,
    dir: PathBuf,
    logs: Arc<LogStore>,
}

impl OutputLog {
    /// Starts pumping the read ends of `pid`'s pipes into `writer`, and
    /// indexes the log by `pid`.
    pub fn start(
        logs: &Arc<LogStore>,
        pid: i32,
        writer: LogWriter,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> std::io::Result<Self> {
        let dir = writer.dir().to_path_buf();
        let (stdout, stderr) = (
            pipe::Receiver::from_owned_fd(stdout)?,
            pipe::Receiver::from_owned_fd(stderr)?,
        );
        if let Err(e) = logs.link_pid(pid, &dir) {
            tracing::warn!(pid, error = %e, "indexing the log by pid");
        }
        Ok(Self {
            pump: Pump::start(stdout, stderr, writer),
            dir,
            logs: logs.clone(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` while the output flows into the log (see [`Pump::alongside`]).
    pub async fn alongside<T>(&mut self, f: impl Future<Output = T>) -> T {
        self.pump.alongside(f).await
    }

    /// Waits (bounded) until the pipes are read to their end: then the log
    /// holds the whole output, though it is not marked complete yet.
    pub async fn drain(self) -> DrainedLog {
        DrainedLog {
            writer: self.pump.drain(DRAIN_TIMEOUT).await,
            dir: self.dir,
            logs: self.logs,
        }
    }
}

/// A log that holds all of a workload's output, to be marked complete.
pub(crate) struct DrainedLog {
    writer: Option<LogWriter>,
    dir: PathBuf,
    logs: Arc<LogStore>,
}

impl DrainedLog {
    pub fn logs(&self) -> &Arc<LogStore> {
        &self.logs
    }

    /// Writes the end marker and counts the log complete, in place (an
    /// xattr and a count). Returns the bytes the log holds when its writer
    /// knows them, and the old logs this one pushed beyond the retention
    /// bound, for [`LogStore::remove_old`] (blocking: not in place).
    pub fn finish(self, exit: Option<ExitKind>, message: String) -> (Option<u64>, Vec<PathBuf>) {
        let mut size = None;
        if let Some(mut writer) = self.writer {
            let end = end_marker(exit, message);
            if let Err(e) = blocking_io(|| writer.finish(&end)) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "closing a workload log");
            }
            size = writer.kept_bytes();
        }
        let evicted = blocking_io(|| self.logs.count_complete(&self.dir, size));
        (size, evicted)
    }
}

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The pump of one workload: a future polled by the task that owns the
/// workload (see [`Pump::alongside`]), not a task of its own, so that the
/// child's exit and its pipes' end wake one task, not two.
pub(crate) struct Pump {
    reading: Option<Pin<Box<dyn Future<Output = LogWriter> + Send>>>,
    read: Option<LogWriter>,
    give_up: CancellationToken,
}

impl Pump {
    /// Prepares reading `stdout` and `stderr` into `writer`; nothing is
    /// read until the pump is polled.
    pub fn start<R>(stdout: R, stderr: R, writer: LogWriter) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let give_up = CancellationToken::new();
        Self {
            reading: Some(Box::pin(pump(stdout, stderr, writer, give_up.clone()))),
            read: None,
            give_up,
        }
    }

    /// Runs `f` while the pipes are read into the log: a workload that
    /// writes must never wait for its owner to reach [`Self::drain`].
    pub async fn alongside<T>(&mut self, f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        loop {
            let Some(reading) = self.reading.as_mut() else {
                return f.await;
            };
            tokio::select! {
                biased;
                writer = reading => {
                    self.reading = None;
                    self.read = Some(writer);
                }
                out = &mut f => return out,
            }
        }
    }

    /// Waits for both pipes to end, at most `within`: a process that left
    /// the workload's cgroup can hold them open forever. Whatever was
    /// written is in the log either way; a note there says when reading
    /// stopped early. Returns the writer to finish the log with.
    pub async fn drain(mut self, within: Duration) -> Option<LogWriter> {
        let Some(mut reading) = self.reading.take() else {
            return self.read;
        };
        // Usually the pipes have just ended and the reactor knows it at its
        // next turn: a yield gets there without arming the drain's timer.
        tokio::task::yield_now().await;
        let ready = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
        if let Poll::Ready(writer) = ready {
            return Some(writer);
        }
        match tokio::time::timeout(within, &mut reading).await {
            Ok(writer) => Some(writer),
            Err(_) => {
                self.give_up.cancel();
                Some(reading.await)
            }
        }
    }
}

async fn pump<R: AsyncRead + Unpin>(
    mut stdout: R,
    mut stderr: R,
    mut writer: LogWriter,
    give_up: CancellationToken,
) -> LogWriter {
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let (stream, read) = tokio::select! {
            r = stdout.read(&mut out_buf), if out_open => (Stream::Stdout, r),
            r = stderr.read(&mut err_buf), if err_open => (Stream::Stderr, r),
            _ = give_up.cancelled() => {
                let note = "[aurae: stopped reading output: the process exited but another process (outside its cgroup) still holds its output open]";
                append(&mut writer, Stream::Stderr, None, Some(note));
                break;
            }
        };
        let buf = match stream {
            Stream::Stdout => &out_buf,
            Stream::Stderr => &err_buf,
        };
        match read {
            Ok(0) => close(stream, &mut out_open, &mut err_open),
            Ok(n) => append(&mut writer, stream, Some(&buf[..n]), None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(stream = stream.as_str(), error = %e, "reading workload output");
                close(stream, &mut out_open, &mut err_open);
            }
        }
    }
    writer
}

fn close(stream: Stream, out_open: &mut bool, err_open: &mut bool) {
    match stream {
        Stream::Stdout => *out_open = false,
        Stream::Stderr => *err_open = false,
    }
}

/// Appends to the log (in place, see [`blocking_io`]).
fn append(writer: &mut LogWriter, stream: Stream, data: Option<&[u8]>, note: Option<&str>) {
    let mut write = || {
        let r = match (data, note) {
            (Some(d), _) => writer.write(stream, d),
            (None, Some(n)) => writer.note(stream, n),
            (None, None) => Ok(()),
        };
        if let Err(e) = r {
            // The disk is full or gone: the workload must not block on it.
            tracing::warn!(dir = %writer.dir().display(), error = %e, "writing a workload log");
        }
    };
    blocking_io(&mut write);
}

/// Runs short blocking file I/O (a write to the page cache, a mkdir, a
/// clone) from async code: in place. `block_in_place` would hand the
/// worker's other tasks to another thread first, a thread wake-up per call
/// that cost more than the I/O: with it a RunExecutable of `/bin/true` took
/// about 25 context switches and, on a busy host, 10 times a bare spawn.
/// Anything that can wait long (a network call, a follower's read) goes to
/// `spawn_blocking` instead.
pub(crate) fn blocking_io<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// Runs `f`, which holds its thread until another process gets a CPU (a
/// vfork-style clone waits for the child's exec), after handing the
/// worker's other tasks to another thread: with 16 calls in flight on 2
/// cores, clones run in place halved the runs per second.
pub(crate) fn off_worker<T>(busy: bool, f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) if busy => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{read_output, LogLimits};
    use std::io::Write;

    fn pipe() -> (tokio::net::unix::pipe::Receiver, std::fs::File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let r = tokio::net::unix::pipe::Receiver::from_owned_fd(r).expect("receiver");
        (r, std::fs::File::from(w))
    }

    #[tokio::test]
    async fn both_pipes_to_the_log_until_their_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LogWriter::open(dir.path(), LogLimits::default()).expect("writer");
        let (out_r, mut out_w) = pipe();
        let (err_r, mut err_w) = pipe();
        let pump = Pump::start(out_r, err_r, writer);
        out_w.write_all(b"one\ntwo").expect("write");
        err_w.write_all(b"bad\n").expect("write");
        drop((out_w, err_w));
        pump.drain(Duration::from_secs(5)).await.expect("writer");
        let text = read_output(dir.path(), 1000).expect("read");
        assert_eq!(text.stdout, "one\ntwo");
        assert_eq!(text.stderr, "bad\n");
    }

    #[tokio::test]
    async fn a_held_pipe_gives_up_with_a_note_and_keeps_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LogWriter::open(dir.path(), LogLimits::default()).expect("writer");
        let (out_r, mut out_w) = pipe();
        let (err_r, err_w) = pipe();
        let pump = Pump::start(out_r, err_r, writer);
        out_w.write_all(b"moved 42\n").expect("write");
        drop(err_w);
        pump.drain(Duration::from_millis(200))
            .await
            .expect("writer");
        let text = read_output(dir.path(), 1000).expect("read");
        assert_eq!(text.stdout, "moved 42\n");
        assert!(
            text.stderr.contains("stopped reading output"),
            "{}",
            text.stderr
        );
        drop(out_w);
    }
}
