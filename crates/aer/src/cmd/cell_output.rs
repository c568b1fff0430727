//! Containers' output on the terminal: each container's stdout to stdout
//! and stderr to stderr, line by line as the daemon's log store has it,
//! prefixed with the container's name when a cell has several (as
//! `docker compose up` does). Shared by `aer cell run` and `aer cell logs`.

use std::collections::HashSet;
use std::io::Write;

use aurae_client::Client;
use aurae_proto::observe::LogChannelType;
use tokio::task::JoinSet;

/// Followers of containers' output, at most one per pid.
pub struct Followers {
    client: Client,
    /// The width names are padded to; `None` prints lines bare.
    width: Option<usize>,
    /// Until the stream ends (the container exited and its log is read) or
    /// only what is stored now.
    follow: bool,
    attached: HashSet<i32>,
    tasks: JoinSet<()>,
}

impl Followers {
    /// Followers for containers named `names`; prefixes when there are several.
    pub fn new(client: Client, names: &[String], follow: bool) -> Self {
        let width = (names.len() > 1).then(|| names.iter().map(|n| n.len()).max().unwrap_or(0));
        Self {
            client,
            width,
            follow,
            attached: HashSet::new(),
            tasks: JoinSet::new(),
        }
    }

    /// How many containers are followed.
    pub fn attached(&self) -> usize {
        self.attached.len()
    }

    /// Starts printing container `name`'s output from the start of its
    /// log (so attaching late loses nothing), unless `pid` is followed.
    pub fn attach(&mut self, name: &str, pid: i32) {
        if pid <= 0 || !self.attached.insert(pid) {
            return;
        }
        let prefix = prefix(name, self.width);
        for channel in [LogChannelType::ChannelStdout, LogChannelType::ChannelStderr] {
            let (client, prefix, name) = (self.client.clone(), prefix.clone(), name.to_string());
            let no_follow = !self.follow;
            self.tasks.spawn(async move {
                if let Err(e) = print_stream(&client, pid, channel, no_follow, &prefix).await {
                    eprintln!("aer: the output of container {name} (pid {pid}) is incomplete: {e}");
                }
            });
        }
    }

    /// Waits until every stream has ended.
    pub async fn wait(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// `web   | ` for `web` among names up to 5 long; nothing for a lone container.
fn prefix(name: &str, width: Option<usize>) -> String {
    width.map(|w| format!("{name:<w$} | ")).unwrap_or_default()
}

async fn print_stream(
    client: &Client,
    pid: i32,
    channel: LogChannelType,
    no_follow: bool,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut stream = client
        .sub_process_output(i64::from(pid), channel, no_follow)
        .await?;
    while let Some(item) = stream.message().await? {
        let line = item.line.strip_suffix('\n').unwrap_or(&item.line);
        let written = if channel == LogChannelType::ChannelStderr {
            writeln!(std::io::stderr(), "{prefix}{line}")
        } else {
            writeln!(std::io::stdout(), "{prefix}{line}")
        };
        // The reader went away (`aer cell logs web | head`): stop quietly.
        if written.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn prefixes_line_up_like_compose() {
        assert_eq!(prefix("web", Some(5)), "web   | ");
        assert_eq!(prefix("cache", Some(5)), "cache | ");
        assert_eq!(prefix("web", None), "");
    }
}
