//! Shared by the VM tests: the disk fixtures of hack/build-vm-disk.sh, a
//! small HTTP server on loopback that serves them with ETag/Last-Modified
//! and counts what it sends, and helpers to run, list and read the console
//! of VMs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurae_proto::meta::AuraeMeta;
use aurae_proto::observe::{GetSubProcessStreamRequest, LogChannelType};
use aurae_proto::runtime::{VirtualMachine, VirtualMachineStatus};
use aurae_proto::vms::{ListVmsRequest, VmInfo, VmRef};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_stream::StreamExt;

use crate::common::{Builder, TestDaemon};

/// The line the test disks' init prints on the serial console.
pub const MARKER: &str = "AURAE-VM-READY";
/// How long a TCG boot may take on a busy, shared machine.
pub const BOOT: Duration = Duration::from_secs(240);

/// The fixture directory: hack/build-vm-disk.sh's output.
pub fn fixtures() -> PathBuf {
    std::env::var_os("AURAE_VM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/aurae-test/vm"))
}

/// True when VMs can be booted here (root, QEMU, the disks); otherwise says
/// why the test is skipped, and on CI fails: a machine with QEMU must boot.
pub fn require_vms(test: &str) -> bool {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("needs root".to_string())
    } else if !which("qemu-system-x86_64") || !which("qemu-img") {
        Some("qemu-system-x86_64 and qemu-img are not installed (see .ci/run)".to_string())
    } else if !fixtures().join("disk.qcow2").is_file() {
        Some(format!(
            "no test disk in {}: run hack/build-vm-disk.sh",
            fixtures().display()
        ))
    } else {
        None
    };
    crate::common::require(test, missing)
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A daemon for VM tests: TCG forced (the result is the same on this host,
/// and the tests do not depend on the host's KVM), a short power-off wait.
pub async fn daemon() -> TestDaemon {
    daemon_builder().start().await
}

/// [`daemon`]'s settings, for a test that adds flags of its own.
pub fn daemon_builder() -> Builder {
    TestDaemon::builder()
        .arg("--vm-accel")
        .arg("tcg")
        .arg("--vm-stop-timeout")
        .arg("20")
}

/// A loopback HTTP/1.1 server for files of one directory: GET with ETag and
/// Last-Modified, 304 on a matching If-None-Match, 404 otherwise.
pub struct FileServer {
    pub addr: std::net::SocketAddr,
    /// 200 responses with a body sent, by path.
    pub bodies: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    pub not_modified: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    pub async fn start(dir: PathBuf) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the file server");
        let addr = listener.local_addr().expect("address");
        let bodies = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let (b, nm) = (bodies.clone(), not_modified.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (dir, b, nm) = (dir.clone(), b.clone(), nm.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &dir, &b, &nm).await;
                });
            }
        });
        Self {
            addr,
            bodies,
            not_modified,
            task,
        }
    }

    pub fn url(&self, file: &str) -> String {
        format!("http://{}/{file}", self.addr)
    }

    pub fn bodies_sent(&self, file: &str) -> usize {
        let key = format!("/{file}");
        self.bodies
            .lock()
            .expect("lock")
            .get(&key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    conn: tokio::net::TcpStream,
    dir: &Path,
    bodies: &std::sync::Mutex<BTreeMap<String, usize>>,
    not_modified: &AtomicUsize,
) -> std::io::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut request = String::new();
        if r.read_line(&mut request).await? == 0 {
            return Ok(());
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut if_none_match = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await? == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("if-none-match") {
                    if_none_match = Some(v.trim().to_string());
                }
            }
        }
        let file = dir.join(path.trim_start_matches('/'));
        let body = if path.contains("..") {
            None
        } else {
            tokio::fs::read(&file).await.ok()
        };
        let Some(body) = body else {
            w.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await?;
            continue;
        };
        let etag = {
            use sha2::Digest;
            format!("\"{}\"", hex::encode(sha2::Sha256::digest(&body)))
        };
        if if_none_match.as_deref() == Some(etag.as_str()) {
            not_modified.fetch_add(1, Ordering::Relaxed);
            w.write_all(
                format!("HTTP/1.1 304 Not Modified\r\netag: {etag}\r\ncontent-length: 0\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
            continue;
        }
        *bodies.lock().expect("lock").entry(path).or_default() += 1;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\netag: {etag}\r\nlast-modified: Tue, 01 Dec 2026 00:00:00 GMT\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        w.write_all(head.as_bytes()).await?;
        w.write_all(&body).await?;
    }
}

pub fn vm(name: &str, image: &str) -> VirtualMachine {
    VirtualMachine {
        meta: Some(AuraeMeta {
            name: name.into(),
            message: String::new(),
        }),
        image: image.into(),
        memory_mib: 256,
        ..Default::default()
    }
}

pub async fn run(
    d: &TestDaemon,
    name: &str,
    image: &str,
) -> Result<VirtualMachineStatus, tonic::Status> {
    d.client()
        .await
        .core()
        .run_virtual_machine(vm(name, image))
        .await
        .map(|r| r.into_inner())
}

pub async fn list(d: &TestDaemon) -> BTreeMap<String, VmInfo> {
    d.client()
        .await
        .vms()
        .list(ListVmsRequest {})
        .await
        .expect("list")
        .into_inner()
        .vms
        .into_iter()
        .map(|v| {
            (
                v.meta.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                v,
            )
        })
        .collect()
}

pub fn vm_ref(name: &str) -> VmRef {
    VmRef { name: name.into() }
}

/// `vms.Vms` Stop, Start or Delete.
pub enum Call {
    Stop,
    Start,
    Delete,
}

pub async fn call(
    d: &TestDaemon,
    call: Call,
    name: &str,
) -> Result<VirtualMachineStatus, tonic::Status> {
    let mut vms = d.client().await.vms();
    let r = match call {
        Call::Stop => vms.stop(vm_ref(name)).await,
        Call::Start => vms.start(vm_ref(name)).await,
        Call::Delete => vms.delete(vm_ref(name)).await,
    };
    r.map(|r| r.into_inner())
}

pub fn pid_of(s: &VirtualMachineStatus) -> i32 {
    s.proc.as_ref().map(|p| p.pid).unwrap_or(0)
}

pub fn listed_pid(v: &VmInfo) -> i32 {
    v.proc.as_ref().map(|p| p.pid).unwrap_or(0)
}

/// The console of `pid` from boot until a line containing `marker` (and
/// `after` lines more), within [`BOOT`]; panics with what was read when not.
pub async fn console_until(d: &TestDaemon, pid: i32, marker: &str, after: usize) -> Vec<String> {
    let mut stream = d
        .client()
        .await
        .observe()
        .get_sub_process_stream(GetSubProcessStreamRequest {
            channel_type: LogChannelType::ChannelStdout as i32,
            process_id: i64::from(pid),
            ..Default::default()
        })
        .await
        .expect("console stream")
        .into_inner();
    let mut lines = Vec::new();
    let deadline = Instant::now() + BOOT;
    let mut extra: Option<usize> = None;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(Ok(item))) => {
                let seen = item.line.contains(marker);
                lines.push(item.line);
                if seen && extra.is_none() {
                    extra = Some(after);
                }
                match extra {
                    Some(0) => return lines,
                    Some(n) if !seen => extra = Some(n - 1),
                    _ => {}
                }
                if extra == Some(0) {
                    return lines;
                }
            }
            Ok(Some(Err(e))) => panic!("console of {pid}: {e}; read {lines:?}"),
            Ok(None) | Err(_) => break,
        }
    }
    panic!(
        "no {marker:?} on the console of {pid} within {}s; read:\n{}\n{}",
        BOOT.as_secs(),
        lines.join("\n"),
        d.log()
    );
}

/// The pids in the VM's cgroup, in every hierarchy.
pub fn vm_pids(d: &TestDaemon, name: &str) -> Vec<i32> {
    let mut v: Vec<i32> = d
        .cgroup_dirs()
        .iter()
        .flat_map(|dir| crate::common::pids_under(&dir.join("vms").join(format!("{name}.scope"))))
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn vm_cgroups(d: &TestDaemon, name: &str) -> Vec<PathBuf> {
    d.cgroup_dirs()
        .iter()
        .map(|dir| dir.join("vms").join(format!("{name}.scope")))
        .filter(|p| p.exists())
        .collect()
}

pub fn overlay(d: &TestDaemon, name: &str) -> PathBuf {
    d.state_dir
        .join("vms/machines")
        .join(name)
        .join("overlay.qcow2")
}

/// The QEMU processes whose command line names this VM's overlay.
pub fn qemus(d: &TestDaemon, name: &str) -> Vec<i32> {
    let needle = overlay(d, name).display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.starts_with("qemu-system") && cmd.contains(&needle) && crate::common::alive(pid)
            {
                out.push(pid);
            }
        }
    }
    out
}

pub fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}
