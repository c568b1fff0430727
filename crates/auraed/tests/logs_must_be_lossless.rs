//! The log store behind every workload's output: each subscriber (live,
//! slow, late, after a restart) gets every line in order and then the end;
//! RunExecutable replies come back whole; a child escaping its cgroup does
//! not hang the call; the daemon's memory stays bounded however much is
//! written and however many streams are open; the daemon log keeps an audit
//! trail of who ran what.

mod common;

use std::time::{Duration, Instant};

use aurae_client::Client;
use aurae_proto::observe::{LogChannelType, LogItem};
use aurae_proto::runtime::{Executable, ExecutableStatus};
use common::{alive, eventually, exec_pids, require_root, TestDaemon};
use tokio_stream::StreamExt;

const LINES: u64 = 300_000;

fn exe(command: &str) -> Executable {
    Executable {
        command: command.into(),
        ..Default::default()
    }
}

/// The process in this daemon's RunExecutable cgroups whose comm is `comm`.
fn exec_pid_named(d: &TestDaemon, comm: &str) -> Option<i32> {
    exec_pids(d).into_iter().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
    })
}

/// Starts `command` through RunExecutable in a task; the command must begin
/// with `sh -c 'sleep 1; ...'` so that its shell can be found. Returns the
/// call and the shell's pid.
async fn run_in_background(
    d: &TestDaemon,
    c: &Client,
    command: &str,
) -> (
    tokio::task::JoinHandle<Result<tonic::Response<ExecutableStatus>, tonic::Status>>,
    i32,
) {
    let mut core = c.core();
    let request = exe(command);
    let call = tokio::spawn(async move { core.run_executable(request).await });
    assert!(
        eventually(10, || exec_pid_named(d, "sh").is_some()).await,
        "the shell of {command:?} never appeared:\n{}",
        d.log()
    );
    (call, exec_pid_named(d, "sh").expect("shell pid"))
}

/// Reads `stream` to its end (bounded by `secs`), checking that line i is
/// `i + 1`. `pause` is called with the index of each line before it is checked.
async fn expect_seq(
    who: &str,
    mut stream: tonic::Streaming<LogItem>,
    secs: u64,
    mut pause: impl FnMut(u64) -> Option<Duration>,
) {
    let mut n: u64 = 0;
    let ended = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(item) = stream.next().await {
            let item = item.unwrap_or_else(|e| panic!("{who}: error after {n} lines: {e}"));
            if let Some(p) = pause(n) {
                tokio::time::sleep(p).await;
            }
            assert_eq!(
                item.line,
                (n + 1).to_string(),
                "{who}: line {} is wrong",
                n + 1
            );
            assert_eq!(item.channel, "stdout", "{who}");
            n += 1;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "{who}: the stream did not end within {secs}s (got {n} lines)"
    );
    assert_eq!(n, LINES, "{who}: number of lines");
}

fn seq_text(n: u64) -> String {
    let mut s = String::new();
    for i in 1..=n {
        s.push_str(&i.to_string());
        s.push('\n');
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_slow_and_late_subscribers_must_each_get_every_line() {
    if !require_root("live_slow_and_late_subscribers_must_each_get_every_line") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let (call, pid) = run_in_background(&d, &c, "sh -c 'sleep 1; seq 1 300000'").await;

    let live = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .expect("live stream");
    let slow = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .expect("slow stream");
    let live = tokio::spawn(expect_seq("live subscriber", live, 120, |_| None));
    // ~0.2 ms per line for the first 5,000 lines (1 ms every 5th line).
    let slow = tokio::spawn(expect_seq("slow subscriber", slow, 120, |i| {
        (i < 5_000 && i % 5 == 0).then_some(Duration::from_millis(1))
    }));

    let r = tokio::time::timeout(Duration::from_secs(120), call)
        .await
        .expect("RunExecutable returns")
        .expect("join")
        .expect("RunExecutable")
        .into_inner();
    assert_eq!(r.proc.as_ref().map(|p| p.pid), Some(pid), "{r:?}");
    assert_eq!(r.exit_code, "0");
    assert!(
        r.stdout == seq_text(LINES),
        "the reply's stdout is not seq 1 300000: {} bytes, starts {:?}, ends {:?}",
        r.stdout.len(),
        &r.stdout[..r.stdout.len().min(40)],
        &r.stdout[r.stdout.len().saturating_sub(40)..]
    );

    let late = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .expect("late stream");
    expect_seq("late subscriber", late, 120, |_| None).await;
    live.await.expect("live subscriber");
    slow.await.expect("slow subscriber");
}

#[tokio::test]
async fn finished_output_must_still_stream_after_a_restart() {
    if !require_root("finished_output_must_still_stream_after_a_restart") {
        return;
    }
    let mut d = TestDaemon::start().await;
    let r = d
        .client()
        .await
        .run_executable(exe("seq 1 20000"))
        .await
        .expect("run");
    let pid = r.proc.expect("proc").pid;
    assert_eq!(r.stdout, seq_text(20_000));
    d.restart().await;
    let c = d.client().await;
    let mut s = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .unwrap_or_else(|e| panic!("stream of pid {pid} after a restart: {e}\n{}", d.log()));
    let mut lines = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(item) = s.next().await {
            lines.push(item.expect("item").line);
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream of a finished process must end");
    let want: Vec<String> = (1..=20_000).map(|i: u32| i.to_string()).collect();
    assert!(
        lines == want,
        "after a restart: {} lines, first {:?}, last {:?}",
        lines.len(),
        lines.first(),
        lines.last()
    );
}

/// Processes (not zombies) whose argv is exactly `argv`.
fn processes_with_argv(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| a.bytes().chain(std::iter::once(0)))
        .collect();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| alive(*pid))
        .collect()
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn run_executable_must_return_when_a_child_escapes_its_cgroup() {
    if !require_root("run_executable_must_return_when_a_child_escapes_its_cgroup") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let argv = ["sleep", "24.7311"];
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        c.run_executable(exe(
            "sh -c 'sleep 24.7311 & p=$!; for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do echo $p > ${h}cgroup.procs 2>/dev/null; done; echo moved $p'",
        )),
    )
    .await;
    let took = started.elapsed();
    let escaped = processes_with_argv(&argv);
    for p in &escaped {
        kill(*p);
    }
    let r = r
        .unwrap_or_else(|_| panic!("RunExecutable still running after 30 s"))
        .expect("run");
    assert!(
        took <= Duration::from_secs(10),
        "RunExecutable took {took:?} (the escaped child holds stdout)"
    );
    assert!(
        r.stdout.contains("moved "),
        "stdout {:?}, stderr {:?}, message {:?}",
        r.stdout,
        r.stderr,
        r.meta
    );
    if let Some(p) = r
        .stdout
        .trim()
        .strip_prefix("moved ")
        .and_then(|p| p.parse().ok())
    {
        kill(p);
    }
    assert!(eventually(5, || processes_with_argv(&argv).is_empty()).await);
}

#[tokio::test]
async fn run_executable_must_return_8_mib_of_stdout_whole() {
    if !require_root("run_executable_must_return_8_mib_of_stdout_whole") {
        return;
    }
    let d = TestDaemon::start().await;
    let r = d
        .client()
        .await
        .run_executable(exe("sh -c 'head -c 8388608 /dev/zero | tr \"\\\\0\" a'"))
        .await
        .expect("an 8 MiB reply must decode");
    assert_eq!(r.exit_code, "0", "{:?}", r.meta);
    assert_eq!(r.stdout.len(), 8 << 20, "stdout length");
    assert!(r.stdout.bytes().all(|b| b == b'a'), "stdout is not all 'a'");
}

/// The resident set size of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status of the daemon");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// How many descriptors `pid` has open.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_must_stay_bounded_while_1_gib_is_written_to_an_unread_stream() {
    if !require_root("memory_must_stay_bounded_while_1_gib_is_written_to_an_unread_stream") {
        return;
    }
    let d = TestDaemon::start().await;
    let daemon = d.pid().expect("daemon pid");
    let c = d.client().await;
    // Warm up: one run and one stream, so that lazily allocated state is there.
    let w = c.run_executable(exe("echo warm")).await.expect("warm up");
    let mut s = c
        .sub_process_stream(
            w.proc.expect("proc").pid as i64,
            LogChannelType::ChannelStdout,
        )
        .await
        .expect("stream");
    while s.next().await.is_some() {}
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss(daemon);

    let (call, pid) = run_in_background(
        &d,
        &c,
        r#"sh -c 'sleep 1; head -c 1073741824 /dev/zero | tr "\\0" "\\377"'"#,
    )
    .await;
    // Opened, never read.
    let unread = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .expect("stream");
    let started = Instant::now();
    let mut peak = idle;
    let mut samples = 0u32;
    while !call.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "1 GiB not written in 10 minutes"
        );
        peak = peak.max(rss(daemon));
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let r = call
        .await
        .expect("join")
        .expect("RunExecutable")
        .into_inner();
    drop(unread);
    let growth = peak.saturating_sub(idle);
    println!(
        "memory, 1 GiB written with one unread subscriber: daemon VmRSS idle {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB ({samples} samples over {:.1} s)",
        idle as f64 / MIB,
        peak as f64 / MIB,
        growth as f64 / MIB,
        took.as_secs_f64()
    );
    assert_eq!(r.exit_code, "0", "{:?}", r.meta);
    assert!(
        !r.stdout.is_empty(),
        "the reply carries the start of stdout"
    );
    assert!(
        growth <= 64 << 20,
        "daemon RSS grew by {:.1} MiB (> 64 MiB) while 1 GiB was written",
        growth as f64 / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_must_stay_bounded_with_2000_idle_subscribers() {
    if !require_root("memory_must_stay_bounded_with_2000_idle_subscribers") {
        return;
    }
    const CONNECTIONS: usize = 20;
    const STREAMS: usize = 100;
    let d = TestDaemon::start().await;
    let daemon = d.pid().expect("daemon pid");
    let c = d.client().await;
    // 1 MiB in 16,384 lines of 64 bytes.
    let r = c
        .run_executable(exe(
            "sh -c 'yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 1048576'",
        ))
        .await
        .expect("run");
    assert_eq!(r.stdout.len(), 1 << 20);
    let pid = r.proc.expect("proc").pid;
    // Warm up: one full read.
    let mut s = c
        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
        .await
        .expect("stream");
    let mut n = 0;
    while let Some(item) = s.next().await {
        item.expect("item");
        n += 1;
    }
    assert_eq!(n, 16_384);
    drop(s);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss(daemon);

    let (peak, after) = idle_round(&d, pid, CONNECTIONS, STREAMS).await;
    let growth = peak.saturating_sub(before);
    let open = CONNECTIONS * STREAMS;
    println!(
        "memory, {open} idle subscribers on 1 MiB of output: daemon VmRSS before {:.1} MiB, peak {:.1} MiB (growth {:.1} MiB), after dropping them {:.1} MiB ({:+.1} MiB from before)",
        before as f64 / MIB,
        peak as f64 / MIB,
        growth as f64 / MIB,
        after as f64 / MIB,
        (after as f64 - before as f64) / MIB
    );
    // A second round: a leak grows again, memory kept for reuse does not.
    let (peak2, after2) = idle_round(&d, pid, CONNECTIONS, STREAMS).await;
    println!(
        "memory, a second round of {open} idle subscribers: peak {:.1} MiB, after dropping them {:.1} MiB ({:+.1} MiB from before the first round)",
        peak2 as f64 / MIB,
        after2 as f64 / MIB,
        (after2 as f64 - before as f64) / MIB
    );
    assert!(
        growth <= 64 << 20,
        "{open} idle subscribers grew the daemon's RSS by {:.1} MiB (> 64 MiB)",
        growth as f64 / MIB
    );
    assert!(
        peak2 <= peak + (32 << 20),
        "a second round of {open} subscribers grew the RSS again: peak {:.1} MiB after {:.1} MiB",
        peak2 as f64 / MIB,
        peak as f64 / MIB
    );
    assert!(
        after <= before + (32 << 20),
        "after the subscribers left the daemon's RSS is {:.1} MiB above where it started (> 32 MiB)",
        (after as f64 - before as f64) / MIB
    );
    // The daemon still serves.
    d.client().await.status().await.expect("status");
}

/// Opens `connections` x `streams` streams of `pid`, never reads them,
/// holds them 3 s, drops them; returns the daemon's peak RSS while they
/// were open and its RSS after they left (waiting up to 10 s for it to
/// come within 32 MiB of what it was before).
async fn idle_round(d: &TestDaemon, pid: i32, connections: usize, streams: usize) -> (u64, u64) {
    let daemon = d.pid().expect("daemon pid");
    let before = rss(daemon);
    let fds_before = fds(daemon);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = d.client().await;
        tasks.push(tokio::spawn(async move {
            let mut open = Vec::new();
            for _ in 0..streams {
                open.push(
                    client
                        .sub_process_stream(pid as i64, LogChannelType::ChannelStdout)
                        .await
                        .expect("idle stream"),
                );
            }
            (client, open)
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        held.push(
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .expect("streams open")
                .expect("join"),
        );
    }
    let open: usize = held.iter().map(|(_, s)| s.len()).sum();
    assert_eq!(open, connections * streams);
    let mut peak = rss(daemon);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss(daemon));
    }
    let fds_open = fds(daemon);
    drop(held);
    let mut after = rss(daemon);
    let deadline = Instant::now() + Duration::from_secs(10);
    while after > before + (32 << 20) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = rss(daemon);
    }
    // Every stream's reader (an open log file) and connection must be gone.
    let settled = eventually(10, || fds(daemon) <= fds_before + 8).await;
    println!(
        "file descriptors of the daemon: {fds_before} before, {fds_open} with {open} streams open, {} after they left",
        fds(daemon)
    );
    assert!(
        settled,
        "the daemon still holds {} descriptors (had {fds_before}): streams leaked",
        fds(daemon)
    );
    (peak, after)
}

/// The value of `key=` in a daemon log line (quotes removed).
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(q) = rest.strip_prefix('"') {
        return q.split_once('"').map(|(v, _)| v.to_string());
    }
    Some(rest.split(' ').next().unwrap_or_default().to_string())
}

#[tokio::test]
async fn daemon_log_must_record_who_ran_what() {
    if !require_root("daemon_log_must_record_who_ran_what") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let r = c
        .run_executable(exe("sh -c 'echo audit-4f1c; exit 3'"))
        .await
        .expect("run");
    let pid = r.proc.expect("proc").pid;
    let mut log = c.daemon_log(200, true).await.expect("daemon log");
    let mut lines = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(item) = log.next().await {
            let item = item.expect("item");
            lines.push(format!("{} {}", item.channel, item.line));
        }
    })
    .await;
    assert!(ended.is_ok(), "history without follow must end");
    let mine = |what: &str| {
        lines
            .iter()
            .find(|l| l.contains(what) && field(l, "pid") == Some(pid.to_string()))
            .cloned()
    };
    let started = mine("workload started")
        .unwrap_or_else(|| panic!("no \"workload started\" line for pid {pid} in:\n{lines:#?}"));
    let ended = mine("workload ended")
        .unwrap_or_else(|| panic!("no \"workload ended\" line for pid {pid} in:\n{lines:#?}"));
    for l in [&started, &ended] {
        assert!(l.starts_with("INFO "), "{l}");
        assert_eq!(field(l, "kind").as_deref(), Some("exec"), "{l}");
        let caller = field(l, "caller").unwrap_or_else(|| panic!("no caller= in {l}"));
        assert!(
            caller.split(',').any(|n| n == "admin"),
            "caller {caller:?} does not name the test client \"admin\": {l}"
        );
    }
    assert!(started.contains("audit-4f1c"), "the command: {started}");
    // The value is the exit sentence, spaces and all.
    assert!(ended.contains(" exit=exited with code 3"), "{ended}");
    assert!(field(&ended, "duration_ms").is_some(), "{ended}");
}
