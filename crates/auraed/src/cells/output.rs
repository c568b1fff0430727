//! A container's stdout and stderr: pipes whose write ends libcontainer
//! makes the init process's fds 1 and 2, and whose read ends the process
//! layer's `OutputLog` writes into the container's log.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;

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
