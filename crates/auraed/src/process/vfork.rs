//! Starting a child the way glibc's posix_spawn does, clone(CLONE_VM |
//! CLONE_VFORK), plus one step posix_spawn cannot do: the child writes
//! itself into its cgroup before exec, so it is placed before it can fork.
//!
//! Why not `Command::pre_exec`: any pre_exec hook makes std fall back to a
//! full fork() of the daemon, whose page tables (many threads, large
//! mappings) cost about 1 ms per start; sharing the address space does not.
//!
//! The child runs on a stack allocated here, in the daemon's memory and
//! with the calling thread's TLS, until it execs or exits; the parent thread
//! is suspended meanwhile (CLONE_VFORK). So the child makes only raw or
//! async-signal-safe calls, allocates nothing, takes no lock and cannot
//! panic; it reports a failure through memory shared with the parent.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

use super::signals::{self, KernelSigaction, KERNEL_SIGSET};

/// The child's stack: it makes a handful of calls, nothing deep.
const CHILD_STACK: usize = 64 * 1024;

/// glibc's execvp default when `PATH` is unset.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// What the child needs, prepared by the parent (the child allocates nothing).
struct ChildArgs<'a> {
    path: &'a CStr,
    argv: *const *const c_char,
    envp: *const *const c_char,
    /// Open `cgroup.procs` (v1: `tasks`) files of its cgroup, one per hierarchy.
    procs: &'a [RawFd],
    /// Sources for fds 0, 1 and 2; all >= 3, so no dup2 clobbers another.
    stdio: [RawFd; 3],
    /// Who to become before exec, if not the daemon's identity.
    creds: Option<Creds<'a>>,
    /// A session of its own, not only a process group (see `terminal`).
    new_session: bool,
    /// The signals to set back to their default (see `signals`).
    reset: u64,
    /// The errno of the step that failed, 0 if the child exec'd.
    errno: AtomicI32,
}

/// The credentials the child takes after it placed itself in its cgroup
/// (writing cgroup.procs needs the daemon's privileges).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Creds<'a> {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: &'a [libc::gid_t],
}

/// Resolves `program` like execvp: as given when it contains a `/`,
/// otherwise the first executable file of that name in `PATH`.
pub(crate) fn resolve(program: impl AsRef<OsStr>, path_var: Option<&OsStr>) -> io::Result<CString> {
    let program = program.as_ref().as_bytes();
    if program.contains(&b'/') {
        return CString::new(program).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    }
    if program.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    let dirs = path_var.map(OsStrExt::as_bytes).unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    for dir in dirs.split(|b| *b == b':') {
        // An empty entry is the current directory, as for execvp.
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut candidate = Vec::with_capacity(dir.len() + 1 + program.len());
        candidate.extend_from_slice(dir);
        candidate.push(b'/');
        candidate.extend_from_slice(program);
        let Ok(candidate) = CString::new(candidate) else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(OsStr::from_bytes(candidate.as_bytes())) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        // SAFETY: `candidate` is a valid NUL-terminated path.
        if unsafe { libc::access(candidate.as_ptr(), libc::X_OK) } == 0 {
            return Ok(candidate);
        }
        denied = true;
    }
    // execvp's answer: EACCES if a match was not executable, else ENOENT.
    let errno = if denied { libc::EACCES } else { libc::ENOENT };
    Err(io::Error::from_raw_os_error(errno))
}

/// The daemon's environment as `KEY=VALUE` strings for execve.
pub(crate) fn environment() -> &'static [CString] {
    // The daemon never changes its environment once started: built once.
    static ENV: std::sync::OnceLock<Vec<CString>> = std::sync::OnceLock::new();
    ENV.get_or_init(read_environment)
}

fn read_environment() -> Vec<CString> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + 1 + v.len());
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect()
}

/// Opens each of `files` (a cgroup's `cgroup.procs` or, v1, `tasks`
/// files) for writing, close-on-exec, for [`spawn_into`]'s child to write
/// itself into: opened here, the child only writes (a path walk per
/// hierarchy less while the parent waits), and a kept cgroup keeps them.
pub(crate) fn open_placement(files: &[impl AsRef<std::path::Path>]) -> io::Result<Vec<OwnedFd>> {
    files
        .iter()
        .map(|f| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(f.as_ref())
                .map(OwnedFd::from)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("opening {}: {e}", f.as_ref().display()))
                })
        })
        .collect()
}

/// Moves `fd` to a number above 2 if it is a standard one, so the child's
/// dup2 onto 0, 1 and 2 cannot overwrite a source it has yet to copy.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open fd; the new fd is owned below.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `new` and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Starts `path` with `argv` and `envp` in a process group of its own
/// (`new_session`: in a session of its own), after writing
/// itself into each of `procs` (its cgroup's `cgroup.procs` or, v1, `tasks`
/// files, open for writing: see [`open_placement`]) and taking `creds`,
/// with `stdio` as its fds 0, 1 and 2 (each must be above 2; see
/// [`above_stdio`]). Returns the
/// pid and a pidfd once the child has exec'd; when a step before exec
/// failed, the child has been reaped and its errno is returned.
pub(crate) fn spawn_into(
    path: &CStr,
    argv: &[CString],
    envp: &[CString],
    procs: &[BorrowedFd<'_>],
    stdio: [BorrowedFd<'_>; 3],
    creds: Option<Creds<'_>>,
    new_session: bool,
) -> io::Result<(i32, OwnedFd)> {
    let stdio = stdio.map(|fd| fd.as_raw_fd());
    let procs: Vec<RawFd> = procs.iter().map(|fd| fd.as_raw_fd()).collect();
    if stdio.iter().any(|fd| *fd <= 2) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "stdio sources must be above fd 2",
        ));
    }
    let argv_ptrs: Vec<*const c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs: Vec<*const c_char> = envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let args = ChildArgs {
        path,
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        procs: &procs,
        stdio,
        creds,
        new_session,
        reset: signals::to_reset(),
        errno: AtomicI32::new(0),
    };
    // Not zeroed: the child writes its stack before it reads it, and the
    // memset of 64 KiB was a cost of every start. Only the raw pointer is
    // used; no Rust value is ever read from this memory.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    // The stack grows down on every Linux target we build for; the ABI wants its top 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;

    // Like posix_spawn: no signal handler of the daemon may run in the child
    // (it would run on the shared memory) before the child has reset them.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask with valid set pointers of the kernel's size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            KERNEL_SIGSET,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut pidfd: c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: `child_main` only makes async-signal-safe calls on `args`,
    // which outlives the child's use of it: with CLONE_VFORK this thread
    // resumes only once the child has exec'd or exited. `top` is the aligned
    // end of `stack`, which also outlives the child. CLONE_PIDFD stores the
    // pidfd through the parent_tid pointer, which is `pidfd`.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut c_void,
            flags,
            &args as *const ChildArgs as *mut c_void,
            &mut pidfd as *mut c_int,
        )
    };
    let clone_err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above; the pointer is valid.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET,
        )
    };
    if pid < 0 {
        return Err(clone_err);
    }
    // SAFETY: the kernel stored a new close-on-exec pidfd owned only here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The child is done with the shared memory (exec'd or exited) before clone returns.
    drop(stack);
    let errno = args.errno.load(Ordering::Acquire);
    if errno != 0 {
        // It has exited with 127: reap it so no zombie is left.
        let _ = nix::sys::wait::waitid(
            nix::sys::wait::Id::PIDFd(std::os::fd::AsFd::as_fd(&pidfd)),
            nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::__WALL,
        );
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok((pid, pidfd))
}

/// The child, between clone and exec.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while the parent is suspended.
    let args = unsafe { &*(arg as *const ChildArgs) };
    reset_signals(args.reset);
    let errno = enter_and_exec(args);
    args.errno.store(errno, Ordering::Release);
    loop {
        // SAFETY: exit ends this child only; it never returns.
        unsafe { libc::syscall(libc::SYS_exit, 127) };
    }
}

/// Sets the signals of `mask` back to their default disposition, as
/// systemd does for a service: caught ones (handlers are daemon code that
/// must not run here; the child has its own table, CLONE_SIGHAND is unset)
/// and ignored ones too. An ignored SIGTERM would otherwise pass from the
/// monitor (which ignores it to outlive the daemon) to the workload, which
/// then could only be stopped by SIGKILL after the grace period; and Rust
/// programs ignore SIGPIPE, which std resets for its children as well.
fn reset_signals(mask: u64) {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        rest: [0; 4],
    };
    for sig in signals::numbers(mask) {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction installing SIG_DFL with no flags and an empty
        // mask; invalid numbers (32, 33 under glibc) just fail with EINVAL.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                KERNEL_SIGSET,
            )
        };
    }
}

/// The last errno, read without std (no allocation, no panic).
fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot (here the
    // parent thread's TLS, which it does not read while suspended).
    let e = unsafe { *libc::__errno_location() };
    if e == 0 {
        libc::EINVAL
    } else {
        e
    }
}

/// Groups first, then gid, then uid (after setuid the rest is no longer
/// allowed); returns the errno of the step that failed, 0 on success.
///
/// Raw syscalls, not glibc's setuid family: in a multi-threaded process
/// those broadcast the change to every thread of the daemon (the shared
/// memory makes this child look like one of them); the raw calls change
/// this task only, which is this child.
fn become_user(creds: &Creds) -> i32 {
    // SAFETY: setgroups reads `groups.len()` gids from a valid slice.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            creds.groups.len(),
            creds.groups.as_ptr(),
        )
    };
    if rc != 0 {
        return errno();
    }
    let (uid, gid) = (creds.uid, creds.gid);
    // SAFETY: setresgid/setresuid take plain integers.
    if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } != 0 {
        return errno();
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } != 0 {
        return errno();
    }
    0
}

/// Process group, cgroup, credentials, stdio, signal mask, exec; returns the errno of the step
/// that failed (it returns only on failure).
fn enter_and_exec(args: &ChildArgs) -> i32 {
    // A process group of its own: a terminal's Ctrl-C aimed at the daemon
    // (its foreground group) must not reach workloads, which are stopped in
    // order instead. A session when asked (see `terminal`).
    // SAFETY: setsid and setpgid have no memory-safety preconditions.
    let rc = unsafe {
        if args.new_session {
            libc::setsid()
        } else {
            libc::setpgid(0, 0)
        }
    };
    if rc < 0 {
        return errno();
    }
    for fd in args.procs {
        // Writing "0" to cgroup.procs moves the writing process itself.
        // SAFETY: fd is open in the parent (hence here); the buffer is a 1-byte static.
        if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } < 0 {
            return errno();
        }
    }
    if let Some(creds) = &args.creds {
        let rc = become_user(creds);
        if rc != 0 {
            return rc;
        }
    }
    for (target, src) in (0..).zip(args.stdio) {
        // dup2 leaves the target without close-on-exec, so it survives exec.
        // SAFETY: `src` is open in the parent (hence here); target is 0..=2.
        if unsafe { libc::dup2(src, target) } < 0 {
            return errno();
        }
    }
    // As std does for its children: an empty mask (the parent's was all-blocked for the clone).
    let empty: u64 = 0;
    // SAFETY: rt_sigprocmask with a valid set of the kernel's size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET,
        )
    };
    if rc != 0 {
        return errno();
    }
    // SAFETY: path, argv and envp are NUL-terminated strings and
    // NULL-terminated arrays prepared by the parent.
    unsafe { libc::execve(args.path.as_ptr(), args.argv, args.envp) };
    errno()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    fn cstrings(v: &[&str]) -> Vec<CString> {
        v.iter()
            .map(|s| CString::new(*s).expect("no NUL"))
            .collect()
    }

    /// Runs `sh -c script` with `envp`, stdout and stderr into one pipe;
    /// returns its pid, its pidfd (not yet waited for) and its output.
    fn sh(script: &str, envp: &[&str]) -> (i32, OwnedFd, String) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let null = above_stdio(std::fs::File::open("/dev/null").expect("null").into()).expect("fd");
        let w = above_stdio(w).expect("fd");
        let path = resolve("sh", Some(OsStr::new("/bin:/usr/bin"))).expect("sh");
        let argv = cstrings(&["sh", "-c", script]);
        let (pid, pidfd) = spawn_into(
            &path,
            &argv,
            &cstrings(envp),
            &[],
            [null.as_fd(), w.as_fd(), w.as_fd()],
            None,
            false,
        )
        .expect("spawn");
        drop(w);
        let mut out = String::new();
        std::fs::File::from(r)
            .read_to_string(&mut out)
            .expect("read");
        (pid, pidfd, out)
    }

    #[test]
    fn the_child_ignores_no_signal_the_daemon_ignores() {
        signals::ignore_sigusr2_for_a_test();
        let (_pid, pidfd, out) = sh("grep -E '^Sig(Ign|Blk)' /proc/self/status", &[]);
        let _ = nix::sys::wait::waitid(
            nix::sys::wait::Id::PIDFd(pidfd.as_fd()),
            nix::sys::wait::WaitPidFlag::WEXITED,
        );
        assert_eq!(
            out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
            "the daemon's ignored and blocked signals are not inherited"
        );
    }

    #[test]
    fn the_child_leads_a_process_group_in_the_daemons_session() {
        let (pid, pidfd, out) = sh(
            "read -r s < /proc/$$/stat; set -- ${s#*) }; echo $3 $4",
            &[],
        );
        let _ = nix::sys::wait::waitid(
            nix::sys::wait::Id::PIDFd(pidfd.as_fd()),
            nix::sys::wait::WaitPidFlag::WEXITED,
        );
        let session = nix::unistd::getsid(None).expect("getsid").as_raw();
        assert_eq!(
            out,
            format!("{pid} {session}\n"),
            "process group and session"
        );
    }

    #[test]
    fn resolves_like_execvp() {
        let path = Some(OsStr::new("/nonexistent-dir::/bin:/usr/bin"));
        let sh = resolve("sh", path).expect("sh in PATH");
        assert!(sh.as_bytes().ends_with(b"/sh"), "{sh:?}");
        let missing = resolve("no-such-program-aurae", path).expect_err("missing");
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        let given = resolve("./x", path).expect("with a slash");
        assert_eq!(given.as_bytes(), b"./x");
    }

    #[test]
    fn runs_a_program_with_its_stdio_and_reports_exec_errors() {
        let (pid, pidfd, out) = sh("echo out-$X; exit 3", &["X=1"]);
        assert_eq!(out, "out-1\n");
        let status = nix::sys::wait::waitid(
            nix::sys::wait::Id::PIDFd(std::os::fd::AsFd::as_fd(&pidfd)),
            nix::sys::wait::WaitPidFlag::WEXITED,
        )
        .expect("wait");
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 3)
        );

        let missing = CString::new("/nonexistent/aurae").expect("path");
        let null = above_stdio(std::fs::File::open("/dev/null").expect("null").into()).expect("fd");
        let err = spawn_into(
            &missing,
            &cstrings(&["/nonexistent/aurae"]),
            &[],
            &[],
            [null.as_fd(), null.as_fd(), null.as_fd()],
            None,
            false,
        )
        .expect_err("exec fails");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
