//! Starting a program in its cgroup with /dev/null as stdin and pipes for
//! stdout and stderr: shared by the daemon (attached processes) and the
//! monitor (detached ones). See `vfork` for why not `Command`.

use std::borrow::Cow;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use nix::fcntl::OFlag;

use super::identity::Identity;
use super::vfork;

/// A child that has exec'd, with the reading ends of its output pipes.
pub(crate) struct Launched {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Copies of the writing ends. While they are open the child's exit
    /// does not end the pipes, so it wakes its watcher once (the pidfd),
    /// not once per pipe as the exiting child closes them: drop them once
    /// the child has exited.
    pub writers: [OwnedFd; 2],
}

/// Clones `argv` into the cgroup whose `procs` files are given (open, see
/// [`vfork::open_placement`]), before exec, as `identity` when one is
/// given, in a process group of its own (see `terminal`).
pub(crate) fn launch(
    argv: &[OsString],
    procs: &[BorrowedFd<'_>],
    identity: Option<&Identity>,
) -> io::Result<Launched> {
    // Every fd is close-on-exec, so a concurrent spawn elsewhere in the
    // daemon cannot inherit them; dup2 in the child clears it on 0-2.
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (out_w, err_w) = (vfork::above_stdio(out_w)?, vfork::above_stdio(err_w)?);
    let writers = [out_w.try_clone()?, err_w.try_clone()?];
    // A workload needs no session: see `terminal` for what it costs.
    let session = super::terminal::children_need_a_session();
    let stdio = [dev_null()?, out_w.as_fd(), err_w.as_fd()];
    let (pid, pidfd) = start(argv, procs, stdio, identity, session)?;
    Ok(Launched {
        pid,
        pidfd,
        stdout: out_r,
        stderr: err_r,
        writers,
    })
}

/// Clones `argv` into the cgroup whose `procs` files are given (open, see
/// [`vfork::open_placement`]; none: it stays in the daemon's), with `stdio` as its fds 0, 1 and 2 (close-on-exec
/// here, so no concurrent spawn inherits them), as `identity` when one is
/// given, in a session of its own (helpers that outlive the daemon).
/// Returns its pid and a pidfd once it has exec'd; only the child keeps
/// `stdio`.
pub(crate) fn launch_with(
    argv: &[OsString],
    procs: &[BorrowedFd<'_>],
    stdio: [OwnedFd; 3],
    identity: Option<&Identity>,
) -> io::Result<(i32, OwnedFd)> {
    let [a, b, c] = stdio.map(vfork::above_stdio);
    let (a, b, c) = (a?, b?, c?);
    start(
        argv,
        procs,
        [a.as_fd(), b.as_fd(), c.as_fd()],
        identity,
        true,
    )
}

/// Every workload's stdin, opened once rather than once per start. The
/// children share its open file description, whose flags and offset mean
/// nothing for /dev/null: every read is the end of file.
fn dev_null() -> io::Result<BorrowedFd<'static>> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_fd());
    }
    let fd = vfork::above_stdio(std::fs::File::open("/dev/null")?.into())?;
    Ok(NULL.get_or_init(|| fd).as_fd())
}

/// `stdio` must be above fd 2 (see [`vfork::above_stdio`]).
fn start(
    argv: &[OsString],
    procs: &[BorrowedFd<'_>],
    stdio: [BorrowedFd<'_>; 3],
    identity: Option<&Identity>,
    new_session: bool,
) -> io::Result<(i32, OwnedFd)> {
    let program = argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let path = vfork::resolve(program, std::env::var_os("PATH").as_deref())?;
    let argv = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let envp = environment(identity);
    vfork::spawn_into(
        &path,
        &argv,
        &envp,
        procs,
        stdio,
        identity.map(|id| vfork::Creds {
            uid: id.uid,
            gid: id.gid,
            groups: &id.groups,
        }),
        new_session,
    )
}

/// The daemon's environment; for another user with its `USER`, `LOGNAME`
/// and `HOME`, as systemd sets them for a unit with `User=`.
fn environment(identity: Option<&Identity>) -> Cow<'static, [CString]> {
    let Some(id) = identity else {
        return Cow::Borrowed(vfork::environment());
    };
    let mut env = vfork::environment().to_vec();
    let mut set = |key: &str, value: &str| {
        let prefix = format!("{key}=");
        env.retain(|kv| !kv.as_bytes().starts_with(prefix.as_bytes()));
        if let Ok(kv) = CString::new(format!("{prefix}{value}")) {
            env.push(kv);
        }
    };
    if let Some(name) = &id.user_name {
        set("USER", name);
        set("LOGNAME", name);
    }
    if let Some(home) = &id.home {
        set("HOME", home);
    }
    Cow::Owned(env)
}
