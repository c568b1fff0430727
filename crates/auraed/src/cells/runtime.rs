//! The daemon's side of a container's helper process (`helper.rs`): it
//! starts `auraed container`, which creates the container with youki's
//! libcontainer, lets it start on request, and then ends as the container
//! ends. libcontainer itself never runs in the daemon.
//!
//! Every wait on the helper is bounded: a helper that does not answer in
//! time is killed (the cell's teardown then kills and removes the rest).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::OFlag;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::helper::{Reply, START};
use crate::process::{launch_with, ChildExit};

/// A created container: its init waits for [`Control::start`].
pub(crate) struct Created {
    /// The container's init process.
    pub pid: i32,
    /// The helper: it ends as the container ends. Kills it when dropped unreaped.
    pub helper: ChildExit,
    pub control: Control,
    /// The read ends of the container's stdout and stderr.
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The daemon's end of a helper's control socket. Dropping it tells the
/// helper to kill its container.
pub(crate) struct Control {
    stream: BufReader<UnixStream>,
}

/// Where a detached container's helper writes its output and exit (see
/// `helper`): the container then outlives the daemon.
pub(crate) struct DetachedLog<'a> {
    pub log_dir: &'a Path,
    pub cgroup: &'a str,
    pub limits: crate::logs::LogLimits,
}

/// Runs `<exe> container` to create container `id` from the bundle
/// (config.json) at `bundle`, with libcontainer's state under `state_root`.
/// Waits at most `within` for the answer.
pub(crate) async fn create(
    exe: &Path,
    id: &str,
    bundle: &Path,
    state_root: &Path,
    within: Duration,
    detached: Option<DetachedLog<'_>>,
) -> Result<Created, String> {
    let mut argv: Vec<std::ffi::OsString> = vec![
        exe.into(),
        "container".into(),
        "--root".into(),
        state_root.into(),
        "--id".into(),
        id.into(),
        "--bundle".into(),
        bundle.into(),
    ];
    if let Some(d) = detached {
        argv.extend([
            "--log-dir".into(),
            d.log_dir.into(),
            "--cgroup".into(),
            d.cgroup.into(),
            "--max-segment-bytes".into(),
            d.limits.max_segment_bytes.to_string().into(),
            "--max-segments".into(),
            d.limits.max_segments.to_string().into(),
        ]);
    }
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| format!("creating a socket: {e}"))?;
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("creating a pipe: {e}"));
    let ((out_r, out_w), (err_r, err_w)) = (pipe()?, pipe()?);
    let (pid, pidfd) = tokio::task::spawn_blocking(move || {
        launch_with(&argv, &[], [OwnedFd::from(theirs), out_w, err_w], None)
    })
    .await
    .map_err(|e| format!("starting the container helper: {e}"))?
    .map_err(|e| format!("starting the container helper {}: {e}", exe.display()))?;
    let helper =
        ChildExit::from_pidfd(pid, pidfd).map_err(|e| format!("watching the helper: {e}"))?;
    ours.set_nonblocking(true)
        .map_err(|e| format!("control socket: {e}"))?;
    let stream = UnixStream::from_std(ours).map_err(|e| format!("control socket: {e}"))?;
    let mut control = Control {
        stream: BufReader::new(stream),
    };
    let reply = control.reply(within, "create").await?;
    match reply.created {
        Some(pid) => Ok(Created {
            pid,
            helper,
            control,
            stdout: out_r,
            stderr: err_r,
        }),
        None => Err(reply
            .error
            .unwrap_or_else(|| "the helper answered without a pid".into())),
    }
}

impl Control {
    /// Lets the created container exec its workload; waits at most `within`.
    pub async fn start(&mut self, within: Duration) -> Result<(), String> {
        let sent = tokio::time::timeout(
            within,
            self.stream
                .get_mut()
                .write_all(format!("{START}\n").as_bytes()),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("the container ended before it started".into()),
            Err(_) => return Err(format!("the helper did not take the start in {within:?}")),
        }
        let reply = self.reply(within, "start").await?;
        match reply.started {
            Some(true) => Ok(()),
            _ => Err(reply
                .error
                .unwrap_or_else(|| "the helper did not start the container".into())),
        }
    }

    async fn reply(&mut self, within: Duration, step: &str) -> Result<Reply, String> {
        let mut line = String::new();
        match tokio::time::timeout(within, self.stream.read_line(&mut line)).await {
            Ok(Ok(0)) => Err(format!(
                "the container helper ended during {step} without an answer"
            )),
            Ok(Ok(_)) => serde_json::from_str(line.trim())
                .map_err(|e| format!("the container helper answered {line:?}: {e}")),
            Ok(Err(e)) => Err(format!("reading the container helper's answer: {e}")),
            Err(_) => Err(format!(
                "the container helper did not answer the {step} in {within:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for `auraed container` that runs `script` (its control
    /// socket is fd 0; fds 1 and 2 are the container's output).
    fn fake_helper(dir: &Path, script: &str) -> std::path::PathBuf {
        crate::test_script::write_script(dir, "helper", script)
    }

    async fn create_with(script: &str, within: Duration) -> Result<Created, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = fake_helper(dir.path(), script);
        create(&exe, "c", dir.path(), dir.path(), within, None).await
    }

    #[tokio::test]
    async fn a_helper_that_never_answers_is_given_up_in_time_and_killed() {
        let pids = tempfile::tempdir().expect("tempdir");
        let pidfile = pids.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
        let began = std::time::Instant::now();
        let err = create_with(&script, Duration::from_millis(300))
            .await
            .err()
            .expect("no answer");
        assert!(err.contains("did not answer the create"), "{err}");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("a pid");
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !gone() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone(), "the helper {pid} was not killed");
    }

    #[tokio::test]
    async fn a_helper_that_fails_says_why_and_one_that_dies_is_reported() {
        let err = create_with(
            r#"echo '{"error":"no such image"}' >&0"#,
            Duration::from_secs(5),
        )
        .await
        .err()
        .expect("refused");
        assert_eq!(err, "no such image");
        let err = create_with("exit 3", Duration::from_secs(5))
            .await
            .err()
            .expect("died");
        assert!(
            err.contains("ended during create without an answer"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_created_container_is_started_on_request() {
        // Answers like the helper, on fd 0: created, then started once told to.
        let script = r#"echo '{"created":42}' >&0; read cmd; [ "$cmd" = start ] && echo '{"started":true}' >&0; sleep 5"#;
        let mut created = create_with(script, Duration::from_secs(5))
            .await
            .expect("created");
        assert_eq!(created.pid, 42);
        created
            .control
            .start(Duration::from_secs(5))
            .await
            .expect("started");
    }
}
