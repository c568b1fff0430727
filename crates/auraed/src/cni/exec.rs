//! Running one plugin as the CNI protocol says: the plugin binary from the
//! plugin directories, the `CNI_*` environment, the network configuration
//! on stdin, the result (or the error object) on stdout. Behind a trait so
//! the chaining logic is tested without root or plugins.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::CniError;

/// Most bytes read from a plugin's stdout (a result or an error object).
const MAX_STDOUT: usize = 1 << 20;
/// Most bytes of a plugin's stderr kept for the error message.
const MAX_STDERR: usize = 64 << 10;
/// How long one plugin call may take; kubelet's whole sandbox gets minutes,
/// one plugin never needs more than this on a working host.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The CNI command of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
}

impl CniCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

/// What identifies the attachment in every call of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeArgs {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
}

/// The environment of one plugin call (added to the daemon's own, which
/// plugins need for `PATH`: the bridge plugin runs iptables).
pub fn environment(
    command: CniCommand,
    rt: &RuntimeArgs,
    bin_dirs: &[PathBuf],
) -> Vec<(String, String)> {
    let path = bin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let args = rt
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    vec![
        ("CNI_COMMAND".into(), command.as_str().into()),
        ("CNI_CONTAINERID".into(), rt.container_id.clone()),
        ("CNI_NETNS".into(), rt.netns.display().to_string()),
        ("CNI_IFNAME".into(), rt.ifname.clone()),
        ("CNI_ARGS".into(), args),
        ("CNI_PATH".into(), path),
    ]
}

/// How a plugin process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutput {
    /// None on exit 0; otherwise how it ended ("exit status 1").
    pub failure: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs one plugin binary.
pub trait PluginExec: Send + Sync {
    /// The path of plugin `kind` in `bin_dirs`.
    fn find(&self, kind: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, CniError>;
    fn run(
        &self,
        plugin: &Path,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<PluginOutput, CniError>;
}

/// The real thing: fork and exec, bounded output, a deadline.
pub struct ProcessExec {
    pub timeout: Duration,
}

impl PluginExec for ProcessExec {
    fn find(&self, kind: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
        use std::os::unix::fs::PermissionsExt;
        bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: kind.to_string(),
                dirs: bin_dirs.to_vec(),
            })
    }

    fn run(
        &self,
        plugin: &Path,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<PluginOutput, CniError> {
        let exec_err = |source| CniError::Exec {
            plugin: plugin.to_path_buf(),
            source,
        };
        let name = plugin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child = Command::new(plugin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir("/")
            .spawn()
            .map_err(exec_err)?;
        let (Some(mut input), Some(out), Some(err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(exec_err(std::io::Error::other("no pipes to the plugin")));
        };
        let data = stdin.to_vec();
        // Threads of their own: a plugin may write before it has read all of stdin.
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = std::thread::spawn(move || read_capped(out, MAX_STDOUT));
        let err = std::thread::spawn(move || read_capped(err, MAX_STDERR));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait().map_err(exec_err)? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CniError::Timeout {
                        plugin: name,
                        command: command_of(env),
                        secs: self.timeout.as_secs(),
                    });
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let _ = writer.join();
        let (stdout, overflow) = out.join().unwrap_or_default();
        let (stderr, _) = err.join().unwrap_or_default();
        if overflow {
            return Err(CniError::OutputTooLarge {
                plugin: name,
                stream: "stdout",
                limit: MAX_STDOUT,
            });
        }
        Ok(PluginOutput {
            failure: (!status.success()).then(|| status.to_string()),
            stdout,
            stderr,
        })
    }
}

fn command_of(env: &[(String, String)]) -> &'static str {
    match env
        .iter()
        .find(|(k, _)| k == "CNI_COMMAND")
        .map(|(_, v)| v.as_str())
    {
        Some("ADD") => "ADD",
        Some("DEL") => "DEL",
        Some("CHECK") => "CHECK",
        _ => "a command",
    }
}

/// Reads up to `cap` bytes, then drains the rest so the writer never
/// blocks; true when there was more.
fn read_capped(mut r: impl Read, cap: usize) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let _ = (&mut r).take(cap as u64).read_to_end(&mut buf);
    let extra = std::io::copy(&mut r, &mut std::io::sink()).unwrap_or(0);
    (buf, extra > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_carries_every_cni_variable() {
        let rt = RuntimeArgs {
            container_id: "aurae-web-1".into(),
            netns: "/run/aurae/cells/web/ns/net".into(),
            ifname: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("AURAE_CELL".into(), "web".into()),
            ],
        };
        let env = environment(
            CniCommand::Del,
            &rt,
            &["/usr/lib/cni".into(), "/opt/cni/bin".into()],
        );
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        assert_eq!(get("CNI_COMMAND"), "DEL");
        assert_eq!(get("CNI_CONTAINERID"), "aurae-web-1");
        assert_eq!(get("CNI_NETNS"), "/run/aurae/cells/web/ns/net");
        assert_eq!(get("CNI_IFNAME"), "eth0");
        assert_eq!(get("CNI_ARGS"), "IgnoreUnknown=1;AURAE_CELL=web");
        assert_eq!(get("CNI_PATH"), "/usr/lib/cni:/opt/cni/bin");
        assert_eq!(command_of(&env), "DEL");
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        crate::test_script::write_script(dir, name, body)
    }

    #[test]
    fn runs_a_plugin_with_stdin_and_env_and_reads_its_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        script(
            dir.path(),
            "echoer",
            r#"read -r conf; printf '{"cmd":"%s","id":"%s","conf":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$conf""#,
        );
        std::fs::write(dir.path().join("not-executable"), "").expect("write");
        let exec = ProcessExec {
            timeout: Duration::from_secs(10),
        };
        let dirs = vec![dir.path().join("missing"), dir.path().to_path_buf()];
        let plugin = exec.find("echoer", &dirs).expect("found");
        assert!(matches!(
            exec.find("not-executable", &dirs),
            Err(CniError::PluginNotFound { .. })
        ));
        let env = vec![
            ("CNI_COMMAND".to_string(), "ADD".to_string()),
            ("CNI_CONTAINERID".to_string(), "c1".to_string()),
        ];
        let out = exec.run(&plugin, &env, b"{\"a\":1}\n").expect("run");
        assert_eq!(out.failure, None);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            r#"{"cmd":"ADD","id":"c1","conf":{"a":1}}"#
        );
    }

    #[test]
    fn failures_timeouts_and_floods_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fail = script(
            dir.path(),
            "fail",
            r#"echo '{"code":7,"msg":"bad"}'; echo oops >&2; exit 3"#,
        );
        let slow = script(dir.path(), "slow", "exec sleep 30");
        let flood = script(dir.path(), "flood", "head -c 2000000 /dev/zero");
        let exec = ProcessExec {
            timeout: Duration::from_millis(300),
        };
        let out = exec.run(&fail, &[], b"").expect("run");
        assert_eq!(out.failure.as_deref(), Some("exit status: 3"));
        assert_eq!(out.stdout, b"{\"code\":7,\"msg\":\"bad\"}\n");
        assert_eq!(out.stderr, b"oops\n");
        let env = [("CNI_COMMAND".to_string(), "CHECK".to_string())];
        let err = exec.run(&slow, &env, b"").expect_err("timeout");
        assert!(
            matches!(
                err,
                CniError::Timeout {
                    command: "CHECK",
                    ..
                }
            ),
            "{err}"
        );
        let exec = ProcessExec {
            timeout: Duration::from_secs(10),
        };
        let err = exec.run(&flood, &[], b"").expect_err("flood");
        assert!(matches!(err, CniError::OutputTooLarge { .. }), "{err}");
    }
}
