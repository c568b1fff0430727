//! PID 1 once the system is up: it starts the daemon as its only child and
//! from then on only reaps, forwards signals and powers off.
//!
//! Why the daemon is not PID 1 itself: PID 1 inherits every orphan and
//! must reap it with waitpid(-1), while the daemon's process layer waits
//! for its own children through pidfds (process/pidfd.rs) and libraries it
//! uses (libcontainer, std::process) wait for specific pids. A waitpid(-1)
//! in the daemon would steal those exits. Split in two, each waits only
//! for its own children: PID 1's are the daemon and the orphans, the
//! daemon's are its workloads.

use std::ffi::CString;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// How long the daemon may take to stop its workloads after SIGTERM
/// before it is killed (its own stop is bounded by --stop-grace + 1 s).
const DAEMON_STOP: Duration = Duration::from_secs(30);
/// How long what is left after the daemon may take to go after SIGTERM.
const LEFTOVERS_STOP: Duration = Duration::from_secs(3);

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPWR,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set
}

/// Runs `/init` (this binary) as the daemon with `args` and supervises it
/// until it exits, then powers off.
pub fn supervise(args: Vec<String>) -> ! {
    let set = handled();
    if let Err(e) = set.thread_block() {
        super::say(&format!("blocking signals: {e}"));
        power_off();
    }
    // SAFETY: PID 1 is single-threaded here (no runtime started yet), so
    // the child may run any code before it executes the daemon.
    let daemon = match unsafe { fork() } {
        Ok(ForkResult::Child) => exec_daemon(args),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            super::say(&format!("starting the daemon: {e}"));
            power_off();
        }
    };
    let mut stop_deadline: Option<Instant> = None;
    loop {
        let timeout = stop_deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match wait_signal(&set, timeout) {
            Some(Signal::SIGCHLD) => {
                if let Some(status) = reap(Some(daemon)) {
                    let how = match status {
                        WaitStatus::Exited(_, code) => format!("exit code {code}"),
                        WaitStatus::Signaled(_, signal, _) => format!("{signal}"),
                        other => format!("{other:?}"),
                    };
                    super::say(&format!("the daemon ended ({how}): powering off"));
                    power_off();
                }
            }
            Some(sig @ (Signal::SIGTERM | Signal::SIGINT | Signal::SIGPWR)) => {
                super::say(&format!("{sig}: stopping the daemon"));
                let _ = kill(daemon, Signal::SIGTERM);
                stop_deadline.get_or_insert(Instant::now() + DAEMON_STOP);
            }
            Some(Signal::SIGHUP) => {
                let _ = kill(daemon, Signal::SIGHUP);
            }
            Some(_) => {}
            None => {
                super::say("the daemon did not stop in time: killing it");
                let _ = kill(daemon, Signal::SIGKILL);
                stop_deadline = None;
            }
        }
    }
}

fn exec_daemon(args: Vec<String>) -> ! {
    let _ = SigSet::empty().thread_set_mask();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let argv: Vec<CString> = std::iter::once("auraed".to_string())
        .chain(args)
        .filter_map(|a| CString::new(a).ok())
        .collect();
    let err = nix::unistd::execv(c"/init", &argv).unwrap_err();
    super::say(&format!("executing the daemon: {err}"));
    // SAFETY: _exit ends the forked child without running PID 1's destructors.
    unsafe { libc::_exit(127) }
}

/// Waits for one of `set` (blocked), at most `timeout`; `None` on timeout.
fn wait_signal(set: &SigSet, timeout: Option<Duration>) -> Option<Signal> {
    loop {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the set and the timespec outlive the call; no siginfo is asked for.
        let rc = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), ts_ptr) };
        if rc >= 0 {
            return Signal::try_from(rc).ok();
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EAGAIN => return None,
            _ => continue,
        }
    }
}

/// Reaps every child that has exited; returns the status of `watch` if it
/// was among them.
fn reap(watch: Option<Pid>) -> Option<WaitStatus> {
    let mut seen = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return seen,
            Ok(status) => {
                if status.pid() == watch && watch.is_some() {
                    seen = Some(status);
                }
            }
        }
    }
}

/// True once no child is left.
fn no_children() -> bool {
    matches!(
        waitpid(None, Some(WaitPidFlag::WNOHANG)),
        Err(nix::errno::Errno::ECHILD)
    )
}

fn stop_everyone(signal: Signal, within: Duration) {
    let _ = kill(Pid::from_raw(-1), signal);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        reap(None);
        if no_children() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends the instance: what is left gets SIGTERM then SIGKILL, the disks
/// are synced, then the machine resets: with the kernel's `reboot=t` and
/// QEMU's `-no-reboot` that makes QEMU exit, which is what the parent
/// waits for, on every machine type (microvm with acpi=off cannot power
/// off: RB_POWER_OFF only halts the CPU and QEMU keeps running).
pub fn power_off() -> ! {
    stop_everyone(Signal::SIGTERM, LEFTOVERS_STOP);
    stop_everyone(Signal::SIGKILL, LEFTOVERS_STOP);
    nix::unistd::sync();
    let e = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT).unwrap_err();
    super::say(&format!("reboot: {e}"));
    // PID 1 must never exit (the kernel would panic): wait to be killed.
    loop {
        nix::unistd::pause();
    }
}
