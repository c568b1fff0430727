//! A workload's output pipes into its log: one future reads both pipes and
//! appends every read to the log at once (nothing is held back for a reader
//! or a reply), until both pipes reach their end or it is told to stop
//! waiting for them. The task that owns the workload polls it alongside its
//! wait for the exit ([`OutputLog::alongside`]).

use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::pipe;

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
    writer: LogWriter,
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
        let mut writer = self.writer;
        let end = end_marker(exit, message);
        if let Err(e) = blocking_io(|| writer.finish(&end)) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "closing a workload log");
        }
        let size = writer.kept_bytes();
        let evicted = blocking_io(|| self.logs.count_complete(&self.dir, size));
        (size, evicted)
    }
}

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What the pump notes in the log when it stops before the pipes ended.
const GAVE_UP: &str = "[aurae: stopped reading output: the process exited but another process (outside its cgroup) still holds its output open]";

/// The pump of one workload: its pipes and its log writer, read by the
/// task that owns the workload (see [`Pump::alongside`]), not by a task of
/// its own, so that the child's exit and its pipes' end wake one task.
pub(crate) struct Pump {
    /// stdout then stderr (see [`slot`]); `None` once read to its end.
    pipes: [Option<pipe::Receiver>; 2],
    writer: LogWriter,
    /// Holds the last read (its length); its capacity is the read size.
    /// Not zeroed up front: a run that prints nothing never touches it.
    buf: Vec<u8>,
}

/// Where a stream's pipe is in [`Pump::pipes`].
fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Pump {
    /// Prepares reading `stdout` and `stderr` into `writer`; nothing is
    /// read until the pump is polled.
    pub fn start(stdout: pipe::Receiver, stderr: pipe::Receiver, writer: LogWriter) -> Self {
        Self {
            pipes: [Some(stdout), Some(stderr)],
            writer,
            buf: Vec::with_capacity(READ_CHUNK),
        }
    }

    fn open(&self) -> bool {
        self.pipes.iter().any(Option::is_some)
    }

    /// Runs `f` while the pipes are read into the log: a workload that
    /// writes must never wait for its owner to reach [`Self::drain`].
    pub async fn alongside<T>(&mut self, f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        loop {
            if !self.open() {
                return f.await;
            }
            tokio::select! {
                biased;
                () = self.read_to_end() => {}
                out = &mut f => return out,
            }
        }
    }

    /// Waits for both pipes to end, at most `within`: a process that left
    /// the workload's cgroup can hold them open forever. Whatever was
    /// written is in the log either way; a note there says when reading
    /// stopped early. Returns the writer to finish the log with.
    pub async fn drain(mut self, within: Duration) -> LogWriter {
        // Once every writer is gone the pipes are at their end now: read
        // them here rather than wait for the reactor to say so.
        self.read_ready();
        if self.open()
            && tokio::time::timeout(within, self.read_to_end())
                .await
                .is_err()
        {
            append(&mut self.writer, Stream::Stderr, None, Some(GAVE_UP));
        }
        self.writer
    }

    /// Reads both pipes into the log until they end (cancel-safe: a read
    /// is either done and appended, or not started).
    async fn read_to_end(&mut self) {
        while self.open() {
            let (stream, ready) = tokio::select! {
                r = readable(&self.pipes[0]) => (Stream::Stdout, r),
                r = readable(&self.pipes[1]) => (Stream::Stderr, r),
            };
            let read = match (ready, &self.pipes[slot(stream)]) {
                (Ok(()), Some(pipe)) => {
                    self.buf.clear();
                    pipe.try_read_buf(&mut self.buf)
                }
                (Err(e), _) => Err(e),
                (Ok(()), None) => continue,
            };
            match read {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                read => self.take(stream, read),
            }
        }
    }

    /// Reads what the pipes hold without waiting, up to their end.
    fn read_ready(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            while let Some(pipe) = &self.pipes[slot(stream)] {
                // The reactor's readiness is stale here: ask the kernel.
                let read = read_raw(pipe, &mut self.buf);
                match read {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    read => self.take(stream, read),
                }
            }
        }
    }

    /// Appends a read to the log, or closes the pipe at its end or error.
    fn take(&mut self, stream: Stream, read: std::io::Result<usize>) {
        match read {
            Ok(0) => self.close(stream),
            // The buffer holds exactly this read.
            Ok(_) => append(&mut self.writer, stream, Some(&self.buf), None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(stream = stream.as_str(), error = %e, "reading workload output");
                self.close(stream);
            }
        }
    }

    fn close(&mut self, stream: Stream) {
        self.pipes[slot(stream)] = None;
    }
}

/// One `read(2)` of `fd` into `buf`'s capacity, replacing its contents:
/// the kernel's answer, not the reactor's (possibly stale) readiness.
fn read_raw(fd: &impl AsRawFd, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.clear();
    let spare = buf.spare_capacity_mut();
    // SAFETY: read(2) writes at most `spare.len()` bytes into the spare
    // capacity, which `buf` owns and nothing else borrows.
    let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(n) };
    Ok(n)
}

/// Waits until `pipe` can be read; never ready once it is closed.
async fn readable(pipe: &Option<pipe::Receiver>) -> std::io::Result<()> {
    match pipe {
        Some(p) => p.readable().await,
        None => std::future::pending().await,
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

    /// A pump into a log in a new directory, and the writing ends of its pipes.
    fn pump_in_tempdir() -> (tempfile::TempDir, Pump, std::fs::File, std::fs::File) {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = LogWriter::open(dir.path(), LogLimits::default()).expect("writer");
        let (out_r, out_w) = pipe();
        let (err_r, err_w) = pipe();
        (dir, Pump::start(out_r, err_r, writer), out_w, err_w)
    }

    #[tokio::test]
    async fn both_pipes_to_the_log_until_their_end() {
        let (dir, pump, mut out_w, mut err_w) = pump_in_tempdir();
        out_w.write_all(b"one\ntwo").expect("write");
        err_w.write_all(b"bad\n").expect("write");
        drop((out_w, err_w));
        pump.drain(Duration::from_secs(5)).await;
        let text = read_output(dir.path(), 1000).expect("read");
        assert_eq!(text.stdout, "one\ntwo");
        assert_eq!(text.stderr, "bad\n");
    }

    #[tokio::test]
    async fn the_pipes_are_read_while_the_owner_waits_for_something_else() {
        let (dir, mut pump, mut out_w, err_w) = pump_in_tempdir();
        // 16 pipe buffers' worth: the writer ends only if the pump reads
        // while the owner waits for the writer.
        let line = [b'x'; 1023];
        let written = tokio::task::spawn_blocking(move || {
            for _ in 0..1024 {
                out_w.write_all(&line).expect("write");
                out_w.write_all(b"\n").expect("write");
            }
        });
        tokio::time::timeout(Duration::from_secs(20), pump.alongside(written))
            .await
            .expect("the writer was not blocked")
            .expect("writer thread");
        drop(err_w);
        pump.drain(Duration::from_secs(5)).await;
        let text = read_output(dir.path(), 2 << 20).expect("read");
        assert_eq!(text.stdout.len(), 1024 * 1024);
        assert!(text.stderr.is_empty(), "{}", text.stderr);
    }

    #[tokio::test]
    async fn a_held_pipe_gives_up_with_a_note_and_keeps_what_was_written() {
        let (dir, pump, mut out_w, err_w) = pump_in_tempdir();
        out_w.write_all(b"moved 42\n").expect("write");
        drop(err_w);
        pump.drain(Duration::from_millis(200)).await;
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
