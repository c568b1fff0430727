//! A container's stdout and stderr: pipes whose write ends libcontainer
//! makes the init process's fds 1 and 2, and whose read ends feed the
//! per-pid output behind `GetSubProcessStream`.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use nix::fcntl::OFlag;
use tokio::net::unix::pipe;

use crate::observe::output::ProcessOutput;
use crate::observe::Channel;

/// The daemon's ends of a container's output pipes.
pub(crate) struct OutputPipes {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The container's standard streams, as libcontainer takes them.
pub(crate) struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// New pipes (close-on-exec on the daemon's side) and the container's stdio:
/// /dev/null for stdin, the write ends for stdout and stderr.
pub(crate) fn pipes() -> io::Result<(OutputPipes, Stdio)> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // std opens files close-on-exec; libcontainer dup2()s it onto fd 0.
    let stdin = std::fs::File::open("/dev/null")?;
    Ok((
        OutputPipes {
            stdout: out_r,
            stderr: err_r,
        },
        Stdio {
            stdin: stdin.into(),
            stdout: out_w,
            stderr: err_w,
        },
    ))
}

/// Reads `fd` to its end into `output`'s `channel`, line by line, with the
/// process layer's pump (nothing is kept for a caller: containers report
/// through the stream only).
pub(crate) async fn pump(fd: OwnedFd, output: Arc<ProcessOutput>, channel: Channel) {
    match pipe::Receiver::from_owned_fd(fd) {
        Ok(reader) => {
            crate::process::pump(reader, output, channel, 0).await;
        }
        Err(e) => {
            tracing::warn!(channel = channel.as_str(), error = %e, "cannot read container output")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn pumps_lines_until_every_writer_is_gone() {
        let (ours, theirs) = pipes().expect("pipes");
        let output = Arc::new(ProcessOutput::default());
        let task = tokio::spawn(pump(ours.stdout, output.clone(), Channel::Stdout));
        let mut w = std::fs::File::from(theirs.stdout);
        w.write_all(b"one\ntwo\npartial").expect("write");
        drop(w);
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("ends at EOF")
            .expect("join");
        let lines: Vec<String> = output
            .stdout
            .subscribe()
            .backlog
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(lines, ["one", "two", "partial"]);
    }
}
