//! Unit tests of the registry and supervisors without root: real processes,
//! a fake cgroup driver that places nothing and records what it is asked.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::*;
use crate::cgroups::{CgroupDriver, CgroupError, CgroupVersion, Limits};
use crate::logs::{LogLimits, LogStore};
use crate::state::StateDb;

/// Places nothing (children stay in the test's cgroup); records kill_all and remove.
#[derive(Debug, Default)]
struct FakeCgroups {
    leftovers: Vec<String>,
    calls: Mutex<Vec<String>>,
}

impl FakeCgroups {
    fn record(&self, call: String) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }
}

impl CgroupDriver for FakeCgroups {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }
    fn create(&self, _: &CgroupPath) -> Result<(), CgroupError> {
        Ok(())
    }
    fn procs_files(&self, _: &CgroupPath) -> Vec<PathBuf> {
        Vec::new()
    }
    fn add_pid(&self, _: &CgroupPath, _: i32) -> Result<(), CgroupError> {
        Ok(())
    }
    fn probe(&self, path: &CgroupPath) -> Result<crate::cgroups::CgroupProbe, CgroupError> {
        // No files to keep open: the process layer asks pids() instead.
        Err(CgroupError::Io {
            op: "open",
            path: PathBuf::from(path.as_str()),
            source: std::io::ErrorKind::Unsupported.into(),
        })
    }
    fn pids(&self, _: &CgroupPath) -> Result<Vec<i32>, CgroupError> {
        Ok(Vec::new())
    }
    fn signal_all(&self, _: &CgroupPath, _: Signal) -> Result<usize, CgroupError> {
        Ok(0)
    }
    fn kill_all(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        self.record(format!("kill_all {path}"));
        Ok(())
    }
    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        self.record(format!("remove {path}"));
        Ok(())
    }
    fn set_limits(&self, path: &CgroupPath, limits: &Limits) -> Result<(), CgroupError> {
        if !limits.is_empty() {
            self.record(format!("set_limits {path} {limits:?}"));
        }
        Ok(())
    }
    fn oom_kills(&self, _: &CgroupPath) -> Result<u64, CgroupError> {
        Ok(0)
    }
    fn has_controller(&self, _: &str) -> bool {
        true
    }
    fn exists(&self, _: &CgroupPath) -> bool {
        false
    }
    fn children(&self, path: &CgroupPath) -> Result<Vec<String>, CgroupError> {
        self.record(format!("children {path}"));
        Ok(self.leftovers.clone())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    cgroups: Arc<FakeCgroups>,
    schedule: Arc<Schedule>,
}

fn processes(cgroups: Arc<FakeCgroups>, dir: &Path) -> Processes {
    let logs = LogStore::open(&dir.join("logs"), LogLimits::default(), 1 << 30).expect("log store");
    // The fake cannot signal a cgroup, so a stop is SIGKILL after this grace.
    Processes::new(cgroups, logs, Duration::from_millis(100))
}

fn open(dir: &Path, cgroups: Arc<FakeCgroups>) -> Arc<Schedule> {
    let db = Arc::new(StateDb::open(dir).expect("state db"));
    // Attached: unit tests have no auraed binary to run as the monitor.
    Schedule::open(db, processes(cgroups, dir), parent(), false).expect("open")
}

fn parent() -> CgroupPath {
    CgroupPath::new("test/schedule").expect("valid")
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let cgroups = Arc::new(FakeCgroups::default());
    let schedule = open(dir.path(), cgroups.clone());
    Fixture {
        dir,
        cgroups,
        schedule,
    }
}

fn reopen(dir: &Path) -> Arc<Schedule> {
    open(dir, Arc::new(FakeCgroups::default()))
}

fn exe(name: &str, command: &str) -> UnitSpec {
    UnitSpec {
        name: name.into(),
        command: command.into(),
        comment: format!("test {name}"),
        ..Default::default()
    }
}

fn err(r: Result<String, ScheduleError>) -> ScheduleError {
    match r {
        Ok(m) => panic!("expected an error, got Ok({m:?})"),
        Err(e) => e,
    }
}

/// The errors that answer INVALID_ARGUMENT (see `crate::api::status`).
fn invalid_argument(e: &ScheduleError) -> bool {
    matches!(
        e,
        ScheduleError::Name(_) | ScheduleError::Command(_) | ScheduleError::CommentTooLong { .. }
    )
}

fn alive(pid: i32) -> bool {
    // A zombie still has /proc/<pid>: only count processes that are not dead yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

async fn wait_for(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(list: &[ListedUnit]) -> Vec<String> {
    list.iter().map(|u| u.spec.name.clone()).collect()
}

#[tokio::test]
async fn bad_input_is_invalid_argument_and_stores_nothing() {
    let f = fixture();
    let long_command = format!("sleep {}", "1".repeat(MAX_COMMAND_LEN));
    let cases = [
        ("", "sleep 1", None),
        ("a/b", "sleep 1", None),
        ("..", "sleep 1", None),
        (".hidden", "sleep 1", None),
        ("web", "", None),
        ("web", "   ", None),
        ("web", "sleep 'unterminated", None),
        ("web", long_command.as_str(), None),
        ("web", "sleep 1", Some("c".repeat(MAX_COMMENT_LEN + 1))),
    ];
    for (name, command, comment) in cases {
        let mut e = exe(name, command);
        if let Some(c) = comment {
            e.comment = c;
        }
        let err = f.schedule.enable(e).await.expect_err(name);
        assert!(invalid_argument(&err), "{name:?} {err}");
    }
    let mut no_name = exe("x", "sleep 1");
    no_name.name = String::new();
    assert!(invalid_argument(&err(f.schedule.enable(no_name).await)));
    assert!(invalid_argument(&err(f
        .schedule
        .disable("a/b".into())
        .await)));
    assert!(f.schedule.list(true).is_empty() && f.schedule.list(false).is_empty());
    let stored = StateDb::open(&f.dir.path().join("other")).expect("open");
    drop(stored);
    drop(f.schedule);
    let again = reopen(f.dir.path());
    assert!(again.list(true).is_empty() && again.list(false).is_empty());
}

#[tokio::test]
async fn enable_disable_destroy_lifecycle() {
    let f = fixture();
    let s = &f.schedule;
    let msg = s.enable(exe("web", "sleep 1000")).await.expect("enable");
    assert!(msg.starts_with("status=STATUS_ACTIVE pid="), "{msg}");
    let state = s.state("web").expect("registered");
    assert_eq!(state.status, MetaStatus::Active);
    let pid = state.pid;
    assert!(alive(pid), "pid {pid} runs");
    let listed = s.list(true);
    assert_eq!(names(&listed), ["web"]);
    assert_eq!(listed[0].spec.command, "sleep 1000");
    assert_eq!(listed[0].spec.comment, "test web");
    let message = listed[0].message.clone();
    assert_eq!(
        message,
        format!("status=STATUS_ACTIVE pid={pid} restarts=0 last_exit=\"\"")
    );

    // Idempotent: same command, same process.
    s.enable(exe("web", "sleep 1000"))
        .await
        .expect("enable again");
    assert_eq!(s.state("web").map(|st| st.pid), Some(pid));
    // A different command is refused while registered, enabled or not.
    assert!(matches!(
        err(s.enable(exe("web", "sleep 2000")).await),
        ScheduleError::AlreadyExists { .. }
    ));

    let msg = s.disable("web".into()).await.expect("disable");
    assert!(msg.starts_with("status=STATUS_PASSIVE pid=0 "), "{msg}");
    assert!(!alive(pid), "pid {pid} is gone once Disable answered");
    assert!(s.list(true).is_empty());
    assert_eq!(names(&s.list(false)), ["web"]);
    s.disable("web".into())
        .await
        .expect("disable again is fine");
    assert!(matches!(
        err(s.enable(exe("web", "sleep 2000")).await),
        ScheduleError::AlreadyExists { .. }
    ));

    // Enabling the disabled one again starts a new process.
    s.enable(exe("web", "sleep 1000")).await.expect("re-enable");
    let pid2 = s.state("web").map(|st| st.pid).unwrap_or(0);
    assert!(pid2 != 0 && pid2 != pid && alive(pid2));

    let msg = s.destroy("web".into()).await.expect("destroy");
    assert!(msg.starts_with("destroyed"), "{msg}");
    assert!(!alive(pid2));
    assert!(s.list(true).is_empty() && s.list(false).is_empty());
    assert!(matches!(
        err(s.destroy("web".into()).await),
        ScheduleError::NotFound { .. }
    ));
    assert!(matches!(
        err(s.disable("web".into()).await),
        ScheduleError::NotFound { .. }
    ));
    // After Destroy the name is free for any command.
    s.enable(exe("web", "sleep 2000"))
        .await
        .expect("new command");
    assert_eq!(s.counts(), [("scheduled", 1), ("scheduled running", 1)]);
    s.shutdown(true).await;
}

#[tokio::test]
async fn a_killed_process_is_restarted_with_a_new_pid() {
    let f = fixture();
    f.schedule
        .enable(exe("svc", "sleep 1000"))
        .await
        .expect("enable");
    let pid = f.schedule.state("svc").map(|s| s.pid).unwrap_or(0);
    assert!(alive(pid));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
    let s = f.schedule.clone();
    wait_for("a new pid", Duration::from_secs(5), || {
        s.state("svc")
            .is_some_and(|st| st.pid != 0 && st.pid != pid)
    })
    .await;
    let st = f.schedule.state("svc").expect("registered");
    assert!(alive(st.pid));
    assert_eq!(st.status, MetaStatus::Active);
    assert_eq!(st.restarts, 1);
    assert_eq!(st.last_exit, "killed by signal 9 (SIGKILL)");
    f.schedule.shutdown(true).await;
    assert!(!alive(st.pid), "shutdown stops it");
}

#[tokio::test]
async fn an_always_failing_command_hits_the_start_limit() {
    let f = fixture();
    f.schedule
        .enable(exe("bad", "false"))
        .await
        .expect("enable");
    let s = f.schedule.clone();
    wait_for("STATUS_ERROR", Duration::from_secs(10), || {
        s.state("bad")
            .is_some_and(|st| st.status == MetaStatus::Error)
    })
    .await;
    let st = f.schedule.state("bad").expect("registered");
    assert_eq!(
        st.error.as_deref(),
        Some("start limit hit: 5 starts within 10s; last exit: exited with code 1")
    );
    assert_eq!(st.restarts, 4);
    assert_eq!(st.pid, 0);
    // It stays enabled (an operator sees it failed) and Enable tries again.
    assert_eq!(names(&f.schedule.list(true)), ["bad"]);
    f.schedule
        .enable(exe("bad", "false"))
        .await
        .expect("enable again");
    let st = f.schedule.state("bad").expect("registered");
    assert_ne!(st.status, MetaStatus::Error);
}

#[tokio::test]
async fn a_missing_binary_counts_as_a_failed_start() {
    let f = fixture();
    let msg = f
        .schedule
        .enable(exe("nobin", "/nonexistent/aurae-test-binary"))
        .await
        .expect("enable");
    assert!(msg.contains("could not start"), "{msg}");
    let s = f.schedule.clone();
    wait_for("STATUS_ERROR", Duration::from_secs(10), || {
        s.state("nobin")
            .is_some_and(|st| st.status == MetaStatus::Error)
    })
    .await;
    let message = f.schedule.list(true)[0].message.clone();
    assert!(
        message.starts_with("status=STATUS_ERROR pid=0 restarts=4 last_exit=\"could not start"),
        "{message}"
    );
    assert!(
        message
            .contains(" error=\"start limit hit: 5 starts within 10s; last exit: could not start"),
        "{message}"
    );
}

#[tokio::test]
async fn state_survives_reopen_and_start_runs_only_the_enabled() {
    let f = fixture();
    let s = &f.schedule;
    s.enable(exe("a", "sleep 1000")).await.expect("enable a");
    s.enable(exe("b", "sleep 1001")).await.expect("enable b");
    s.disable("b".into()).await.expect("disable b");
    s.enable(exe("c", "sleep 1002")).await.expect("enable c");
    s.destroy("c".into()).await.expect("destroy c");
    s.shutdown(true).await;
    assert!(matches!(
        err(s.enable(exe("d", "sleep 1")).await),
        ScheduleError::ShuttingDown
    ));
    assert!(s.list(true).iter().all(|u| u.message.contains(" pid=0 ")));
    drop(f.schedule);

    let cgroups = Arc::new(FakeCgroups {
        leftovers: vec!["a".into(), "zombie".into()],
        ..Default::default()
    });
    let again = open(f.dir.path(), cgroups.clone());
    assert_eq!(names(&again.list(true)), ["a"]);
    assert_eq!(names(&again.list(false)), ["b"]);
    assert_eq!(
        again.state("a").map(|st| st.status),
        Some(MetaStatus::Standby)
    );
    assert_eq!(
        again.state("b").map(|st| st.status),
        Some(MetaStatus::Passive)
    );
    again.start().await;
    let calls = cgroups.calls.lock().map(|c| c.clone()).unwrap_or_default();
    // Leftovers are killed and removed before anything starts.
    assert_eq!(
        calls[..5],
        [
            "children test/schedule",
            "kill_all test/schedule/a",
            "remove test/schedule/a",
            "kill_all test/schedule/zombie",
            "remove test/schedule/zombie",
        ]
    );
    let st = again.state("a").expect("a");
    assert_eq!(st.status, MetaStatus::Active);
    assert!(alive(st.pid));
    assert_eq!(again.state("b").map(|st| st.pid), Some(0));
    assert!(again.state("c").is_none());
    again.shutdown(true).await;
    assert!(!alive(st.pid));
    let _ = &f.cgroups;
}

#[tokio::test]
async fn concurrent_calls_for_one_name_do_not_race() {
    let f = fixture();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = f.schedule.clone();
        tasks.push(tokio::spawn(async move {
            let e = exe("race", "sleep 1000");
            match i % 3 {
                0 => s.enable(e).await.map(|_| ()),
                1 => s.disable(e.name).await.map(|_| ()),
                _ => s.destroy(e.name).await.map(|_| ()),
            }
        }));
    }
    for t in tasks {
        match t.await.expect("join") {
            Ok(()) => {}
            Err(ScheduleError::NotFound { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Whatever the order, memory and disk agree and at most one process runs.
    let enabled = names(&f.schedule.list(true));
    let disabled = names(&f.schedule.list(false));
    let running = f.schedule.state("race").map(|st| st.pid).unwrap_or(0);
    f.schedule.shutdown(true).await;
    drop(f.schedule);
    let again = reopen(f.dir.path());
    assert_eq!(names(&again.list(true)), enabled);
    assert_eq!(names(&again.list(false)), disabled);
    if enabled.is_empty() {
        assert_eq!(running, 0);
    }
}
