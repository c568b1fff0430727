//! `auraed container-exec` (its spec as JSON on stdin): the helper process that runs one command
//! in a running container (cells.Cells/Exec), the way `runc exec` does.
//!
//! setns into a mount namespace is refused to a multi-threaded process, so
//! this never runs in the daemon: the daemon starts this helper already in
//! the container's cgroups (before exec, as every process it starts), and
//! the helper, single-threaded from exec to exit, joins every namespace of
//! the container's init (user first when it has its own, mount last), then
//! forks, since a pid namespace takes effect for children only. The child
//! takes the container's working directory, groups, user, capabilities
//! and no_new_privileges, and execs the command with the container's
//! environment. The helper waits for it and ends the same way, so the
//! daemon reads the command's exit from the helper's. If the helper is
//! killed (the call's timeout), the kernel kills the command with it.

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use libcontainer::oci_spec::runtime::LinuxCapabilities;
use libcontainer::syscall::syscall::create_syscall;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use crate::process::{resolve, start_time_in, wait_child};

/// The helper's exit code when the command could not be started, as
/// `docker exec` uses 126 (and 127 for a command that does not exist).
pub(crate) const CANNOT_RUN: i32 = 126;
pub(crate) const NOT_FOUND: i32 = 127;

/// What the daemon tells the helper (as JSON on its stdin).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ExecSpec {
    /// The container's init process, whose namespaces are joined, and its
    /// start time (/proc/PID/stat): a pid reused meanwhile is refused.
    pub init_pid: i32,
    pub init_start: u64,
    /// The command's words, as bytes (a word need not be UTF-8).
    pub argv: Vec<Vec<u8>>,
    /// `KEY=value`, the container's.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub capabilities: Option<LinuxCapabilities>,
    pub no_new_privileges: bool,
}

/// The namespaces joined, in order: the user namespace first (it grants
/// the rights to join the others), the mount namespace last (after it,
/// /proc is the container's).
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Runs the helper with its spec on stdin; ends the process as the command ended.
pub fn run() -> i32 {
    let json = match std::io::read_to_string(std::io::stdin()) {
        Ok(j) => j,
        Err(e) => return fail(CANNOT_RUN, &format!("reading the exec spec: {e}")),
    };
    // The command's stdin is /dev/null, as RunExecutable's.
    if let Err(e) = super::helper::null_onto(&[0]) {
        return fail(CANNOT_RUN, &format!("opening /dev/null: {e}"));
    }
    run_spec(&json)
}

fn run_spec(spec_json: &str) -> i32 {
    let spec: ExecSpec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => return fail(CANNOT_RUN, &format!("reading the exec spec: {e}")),
    };
    if let Err(e) = join_namespaces(spec.init_pid, spec.init_start) {
        return fail(CANNOT_RUN, &e);
    }
    // SAFETY: the helper is single-threaded (nothing in it starts a thread),
    // so the child may run any code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let (code, why) = exec(&spec);
            fail(code, &why);
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            crate::process::ignore_stop_signals();
            super::helper::mirror(wait_child(child.as_raw()))
        }
        Err(e) => fail(CANNOT_RUN, &format!("fork: {e}")),
    }
}

fn fail(code: i32, why: &str) -> i32 {
    eprintln!("aurae: exec: {why}");
    code
}

/// Joins every namespace of `pid` that is not already ours, if `pid` is
/// still the process that started at `start`.
fn join_namespaces(pid: i32, start: u64) -> Result<(), String> {
    let gone = || format!("the container's init process {pid} has ended");
    // Everything is opened through this directory: once the process is
    // gone, it answers nothing, even if the pid is taken by another.
    let dir = std::fs::File::open(format!("/proc/{pid}")).map_err(|_| gone())?;
    let open_in = |rel: &str| {
        nix::fcntl::openat(&dir, rel, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
    };
    let same = || {
        open_in("stat")
            .ok()
            .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok())
            .is_some_and(|stat| start_time_in(&stat) == Some(start))
    };
    if !same() {
        return Err(gone());
    }
    let mut targets: Vec<(&str, CloneFlags, OwnedFd)> = Vec::new();
    // Open them all first: after the mount namespace, /proc is another.
    for (name, flag) in NAMESPACES {
        // Missing: a kernel without this type, or the process has ended (checked below).
        let Ok(fd) = open_in(format!("ns/{name}").as_str()) else {
            continue;
        };
        let theirs =
            nix::sys::stat::fstat(&fd).map_err(|e| format!("reading its {name} namespace: {e}"))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map_err(|e| format!("reading our {name} namespace: {e}"))?;
        if (ours.dev(), ours.ino()) == (theirs.st_dev, theirs.st_ino) {
            continue;
        }
        targets.push((name, flag, fd));
    }
    // Still alive with every file open: a namespace skipped above does not exist.
    if !same() {
        return Err(gone());
    }
    for (name, flag, fd) in targets {
        nix::sched::setns(&fd, flag)
            .map_err(|e| format!("joining the container's {name} namespace: {e}"))?;
    }
    Ok(())
}

/// In the child: the container's identity and working directory, then
/// exec. Returns only on failure, with the exit code and why.
fn exec(spec: &ExecSpec) -> (i32, String) {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return (CANNOT_RUN, "setting the parent death signal".into());
    }
    let Some(program) = spec.argv.first() else {
        return (CANNOT_RUN, "empty command".into());
    };
    if let Err(e) = std::env::set_current_dir(&spec.cwd) {
        return (CANNOT_RUN, format!("working directory {}: {e}", spec.cwd));
    }
    let path_var = spec
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .map(OsStr::new);
    let path = match resolve(OsStr::from_bytes(program), path_var) {
        Ok(p) => p,
        Err(e) => {
            let code = if e.raw_os_error() == Some(libc::ENOENT) {
                NOT_FOUND
            } else {
                CANNOT_RUN
            };
            return (code, format!("{}: {e}", String::from_utf8_lossy(program)));
        }
    };
    let to_cstrings = |words: &mut dyn Iterator<Item = &[u8]>| {
        words
            .map(|w| CString::new(w.to_vec()))
            .collect::<Result<Vec<_>, _>>()
    };
    let (Ok(argv), Ok(envp)) = (
        to_cstrings(&mut spec.argv.iter().map(Vec::as_slice)),
        to_cstrings(&mut spec.env.iter().map(String::as_bytes)),
    ) else {
        return (CANNOT_RUN, "a word or variable contains NUL".into());
    };
    if let Err(e) = become_user(spec) {
        return (CANNOT_RUN, e);
    }
    super::helper::reset_signals();
    let err = nix::unistd::execve(&path, &argv, &envp).err();
    let code = if err == Some(nix::errno::Errno::ENOENT) {
        NOT_FOUND
    } else {
        CANNOT_RUN
    };
    (
        code,
        format!(
            "{}: {}",
            path.to_string_lossy(),
            err.map(|e| e.desc()).unwrap_or("exec failed")
        ),
    )
}

/// Groups, user, capabilities and no_new_privileges as the container's
/// init has them (in the same order as libcontainer's init).
fn become_user(spec: &ExecSpec) -> Result<(), String> {
    let mut groups: Vec<libc::gid_t> = vec![spec.gid];
    groups.extend(spec.additional_gids.iter().copied());
    groups.dedup();
    let os_err = |what: String| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: setgroups reads `groups.len()` gids from a live Vec.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(os_err(format!("setting groups {groups:?}")));
    }
    // Keep the permitted capabilities across the change of uid: the
    // container's own set is applied next, as libcontainer does.
    // SAFETY: prctl, setresgid and setresuid take integers only; the
    // process is single-threaded, so the ids change for all of it.
    unsafe {
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(os_err("keeping capabilities".into()));
        }
        if libc::setresgid(spec.gid, spec.gid, spec.gid) != 0 {
            return Err(os_err(format!("becoming gid {}", spec.gid)));
        }
        if libc::setresuid(spec.uid, spec.uid, spec.uid) != 0 {
            return Err(os_err(format!("becoming uid {}", spec.uid)));
        }
    }
    let syscall = create_syscall();
    libcontainer::capabilities::reset_effective(syscall.as_ref())
        .map_err(|e| format!("resetting capabilities: {e}"))?;
    if let Some(caps) = &spec.capabilities {
        libcontainer::capabilities::drop_privileges(caps, syscall.as_ref())
            .map_err(|e| format!("dropping capabilities: {e}"))?;
    }
    if spec.no_new_privileges {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(format!(
                "setting no_new_privileges: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_round_trips_as_json_with_any_bytes_in_words() {
        let spec = ExecSpec {
            init_pid: 42,
            init_start: 7,
            argv: vec![b"cat".to_vec(), vec![0xff, b'x']],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 33,
            gid: 33,
            additional_gids: vec![4],
            capabilities: None,
            no_new_privileges: true,
        };
        let json = serde_json::to_string(&spec).expect("json");
        let back: ExecSpec = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, spec);
        assert_eq!(run_spec("not json"), CANNOT_RUN);
    }

    #[test]
    fn only_the_process_that_started_at_the_given_time_is_joined() {
        let me = std::process::id() as i32;
        let start = crate::process::start_time(me).expect("own start time");
        // Our own namespaces: nothing to join, nothing changes.
        join_namespaces(me, start).expect("the same process");
        let err = join_namespaces(me, start + 1).expect_err("another start time");
        assert!(err.contains("has ended"), "{err}");
        assert!(join_namespaces(i32::MAX, start).is_err());
    }

    #[test]
    fn the_mount_namespace_is_joined_last_and_the_user_namespace_first() {
        assert_eq!(NAMESPACES[0].0, "user");
        assert_eq!(NAMESPACES[NAMESPACES.len() - 1].0, "mnt");
    }
}
