//! A private auraed for the benchmark: temp PKI, temp socket, own cgroup root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aurae_client::{AuraeConfig, Client};
use tempfile::TempDir;

pub struct BenchDaemon {
    pub dir: TempDir,
    child: Child,
    config: AuraeConfig,
}

impl BenchDaemon {
    /// `instance_image`: the directory of hack/build-instance-image.sh, for
    /// the instance figures (instances get a subnet and bridge of the
    /// benchmark's own and certificates from its CA).
    pub async fn start(
        auraed: &Path,
        instance_image: &Path,
        log_level: &str,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("aurae-bench-").tempdir()?;
        let p = |s: &str| dir.path().join(s);
        let socket = p("aurae.sock");
        let status = Command::new(auraed)
            .args(["pki", "init", "--client-name", "bench"])
            .arg("--pki-dir")
            .arg(p("pki"))
            .arg("--client-dir")
            .arg(p("client"))
            .arg("--config")
            .arg(p("config"))
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", auraed.display()))?;
        if !status.success() {
            bail!("auraed pki init failed: {status}");
        }
        let log = std::fs::File::create(p("auraed.log"))?;
        let child = Command::new(auraed)
            .arg("--socket")
            .arg(&socket)
            .arg("--ca-crt")
            .arg(p("pki/ca.crt"))
            .arg("--server-crt")
            .arg(p("pki/_signed.server.crt"))
            .arg("--server-key")
            .arg(p("pki/server.key"))
            .arg("--state-dir")
            .arg(p("state"))
            .arg("--runtime-dir")
            .arg(p("run"))
            .arg("--cgroup-root")
            .arg(format!("aurae-bench-{}", std::process::id()))
            // The cells' network: written by the cell figures (crate::cells).
            .arg("--cni-conf-dir")
            .arg(p("cni"))
            .arg("--ca-key")
            .arg(p("pki/ca.key"))
            .arg("--instance-image-dir")
            .arg(instance_image)
            .args(["--instance-subnet", "10.253.0.0/24"])
            .arg("--instance-bridge")
            .arg(format!("aib{}", std::process::id() % 1_000_000))
            // As users run it: at INFO every run is in the audit trail.
            .env("AURAED_LOG", log_level)
            .stderr(log)
            .spawn()?;
        let config = AuraeConfig::from_path(p("config"))?;
        let d = BenchDaemon { dir, child, config };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(c) = d.client().await {
                if c.status().await.is_ok() {
                    return Ok(d);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "auraed did not answer: {}",
                    std::fs::read_to_string(d.log_path()).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("auraed.log")
    }

    pub fn config(&self) -> &AuraeConfig {
        &self.config
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.config).await?)
    }

    /// `(VmRSS, RssAnon)` in KiB: all resident pages, and the daemon's own
    /// heap and stacks without the mapped binary and libraries.
    pub fn rss_kib(&self) -> anyhow::Result<(u64, u64)> {
        rss_kib_of(self.pid())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// `(VmRSS, RssAnon)` of any process, in KiB.
pub fn rss_kib_of(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{name} not found"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?))
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        // SIGTERM: the daemon removes its socket and cgroups on the way out.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
