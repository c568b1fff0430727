//! What a request changes of how a container's image says to run it: its
//! command, arguments, environment and working directory, with the
//! semantics of a Kubernetes container (`command` replaces the image's
//! Entrypoint, `args` its Cmd, and a `command` without `args` drops the
//! Cmd), which is also what the CRI's ContainerConfig asks for.

use super::image::RunConfig;
use super::spec::env_entry;

/// Longest single argument or environment entry: the kernel's
/// MAX_ARG_STRLEN, so that execve cannot refuse one of them.
pub const MAX_ARG_LEN: usize = 128 * 1024 - 1;
/// Most bytes of command, args and env together; the kernel takes about a
/// quarter of the default 8 MiB stack for argv and envp.
pub const MAX_TOTAL: usize = 1024 * 1024;

/// A container's process as asked, over its image's; empty fields keep the image's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOverrides {
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: String,
}

impl ProcessOverrides {
    /// Why these cannot reach an execve or a config.json, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let all = || self.command.iter().chain(&self.args).chain(&self.env);
        if let Some(long) = all().find(|s| s.len() > MAX_ARG_LEN) {
            return Err(format!(
                "an entry of command, args or env is {} bytes long; the most is {MAX_ARG_LEN}",
                long.len()
            ));
        }
        let total: usize = all().map(|s| s.len() + 1).sum();
        if total > MAX_TOTAL {
            return Err(format!(
                "command, args and env take {total} bytes; the most is {MAX_TOTAL}"
            ));
        }
        if let Some(i) = self.command.iter().position(|s| s.contains('\0')) {
            return Err(format!("command[{i}] contains a NUL byte"));
        }
        if self.command.first().is_some_and(|c| c.is_empty()) {
            return Err("command[0], the program, is empty".to_string());
        }
        if let Some(i) = self.args.iter().position(|s| s.contains('\0')) {
            return Err(format!("args[{i}] contains a NUL byte"));
        }
        for entry in &self.env {
            if env_entry(entry).is_none() {
                return Err(format!(
                    "env entry {:?} is not KEY=value (a non-empty key, no NUL)",
                    clip(entry)
                ));
            }
        }
        let dir = &self.working_dir;
        if !dir.is_empty() && (!dir.starts_with('/') || dir.contains('\0')) {
            return Err(format!(
                "working_dir {:?} is not an absolute path",
                clip(dir)
            ));
        }
        if dir.len() > libc::PATH_MAX as usize {
            return Err(format!(
                "working_dir is longer than {} bytes",
                libc::PATH_MAX
            ));
        }
        Ok(())
    }

    /// `image`'s run config with these applied.
    pub fn apply(&self, image: &mut RunConfig) {
        if !self.command.is_empty() {
            image.entrypoint = self.command.clone();
            image.cmd = self.args.clone();
        } else if !self.args.is_empty() {
            image.cmd = self.args.clone();
        }
        // Later entries win in `spec::env`, so a key the image sets takes this value.
        image.env.extend(self.env.iter().cloned());
        if !self.working_dir.is_empty() {
            image.working_dir = self.working_dir.clone();
        }
    }
}

/// At most 64 characters of `s`, for an error message.
fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into(), "--port=80".into()],
            env: vec!["PATH=/bin".into(), "MODE=prod".into()],
            working_dir: "/srv".into(),
            user: String::new(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nothing_asked_keeps_the_image() {
        let mut config = image();
        ProcessOverrides::default().apply(&mut config);
        assert_eq!(config, image());
    }

    #[test]
    fn args_replace_only_the_cmd() {
        let mut config = image();
        ProcessOverrides {
            args: strings(&["check"]),
            ..Default::default()
        }
        .apply(&mut config);
        assert_eq!(config.entrypoint, ["/entry"]);
        assert_eq!(config.cmd, ["check"]);
    }

    #[test]
    fn a_command_without_args_drops_the_cmd() {
        let mut config = image();
        ProcessOverrides {
            command: strings(&["sh", "-c", "echo hi"]),
            ..Default::default()
        }
        .apply(&mut config);
        assert_eq!(config.entrypoint, ["sh", "-c", "echo hi"]);
        assert!(config.cmd.is_empty());
    }

    #[test]
    fn env_goes_over_the_image_and_working_dir_replaces_it() {
        let mut config = image();
        ProcessOverrides {
            command: strings(&["sh"]),
            args: strings(&["-c", "env"]),
            env: strings(&["MODE=test", "EXTRA=1"]),
            working_dir: "/tmp".into(),
        }
        .apply(&mut config);
        assert_eq!(config.cmd, ["-c", "env"]);
        assert_eq!(
            config.env,
            ["PATH=/bin", "MODE=prod", "MODE=test", "EXTRA=1"]
        );
        assert_eq!(config.working_dir, "/tmp");
    }

    #[test]
    fn refuses_what_execve_or_a_path_cannot_take() {
        let bad = |o: ProcessOverrides| o.check().expect_err("refused");
        assert!(bad(ProcessOverrides {
            command: strings(&["a\0b"]),
            ..Default::default()
        })
        .contains("command[0]"));
        assert!(bad(ProcessOverrides {
            command: strings(&[""]),
            ..Default::default()
        })
        .contains("empty"));
        assert!(bad(ProcessOverrides {
            args: strings(&["ok", "x\0"]),
            ..Default::default()
        })
        .contains("args[1]"));
        for env in ["NOVALUE", "=x", "A=\0"] {
            assert!(bad(ProcessOverrides {
                env: strings(&[env]),
                ..Default::default()
            })
            .contains("KEY=value"));
        }
        assert!(bad(ProcessOverrides {
            working_dir: "relative/dir".into(),
            ..Default::default()
        })
        .contains("absolute"));
        assert!(bad(ProcessOverrides {
            args: vec!["x".repeat(MAX_ARG_LEN + 1)],
            ..Default::default()
        })
        .contains("bytes long"));
        assert!(bad(ProcessOverrides {
            args: vec!["x".repeat(1000); 2000],
            ..Default::default()
        })
        .contains("the most is"));
    }

    #[test]
    fn accepts_empty_args_and_values() {
        ProcessOverrides {
            command: strings(&["printf", ""]),
            args: strings(&[""]),
            env: strings(&["EMPTY="]),
            working_dir: "/".into(),
        }
        .check()
        .expect("valid");
    }
}
