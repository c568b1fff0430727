//! Cells on a CNI network (Debian's containernetworking-plugins in
//! /usr/lib/cni), through a real daemon: a container reaches a server on the
//! host through the bridge, the host reaches a cell by its IP and by a
//! published port, two cells get different addresses, and once the cells
//! end (also after a kill -9 of the daemon and a restart) no veth, IPAM
//! reservation, iptables rule or namespace of theirs is left.
//!
//! Each test has a network, bridge and /24 of its own (the shape of the
//! default network `--bootstrap` writes), so that tests neither collide with
//! each other nor with a real installation.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// common/ and cells_support/ both include the registry fixture by path.
#![allow(clippy::duplicate_mod)]

mod cells_support;
mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aurae_client::Client;
use aurae_proto::meta::Status;
use aurae_proto::runtime::{Cell, CellStatus, PortMapping};
use cells_support::{cell, push_derived, ImageSpec};
use common::{require_registry, TestDaemon};

const PLUGINS: &str = "/usr/lib/cni";
const IPAM_STORE: &str = "/var/lib/cni/networks";

/// A test's own network: `aurae-t-<tag>` on bridge `aurt-<tag>`, 10.213.<n>.0/24.
struct TestNet {
    name: String,
    bridge: String,
    n: u8,
}

impl TestNet {
    fn new(tag: &str, n: u8) -> Self {
        let net = Self {
            name: format!("aurae-t-{tag}"),
            bridge: format!("aurt-{tag}"),
            n,
        };
        net.remove_host_state();
        net
    }

    fn subnet(&self) -> String {
        format!("10.213.{}.0/24", self.n)
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.n, 1)
    }

    fn contains(&self, ip: &str) -> bool {
        ip.parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[..3] == [10, 213, self.n] && ip != self.gateway())
    }

    /// How the network's name appears in the comments of its nat rules, as
    /// iptables-save prints them: `name: \"aurae-t-x\" id: ...`.
    fn in_comments(&self) -> String {
        format!("\\\"{}\\\"", self.name)
    }

    /// Writes the network into the daemon's conf dir (read at each cell).
    fn install(&self, d: &TestDaemon) {
        let dir = conf_dir(d);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = auraed::cni::bridge_network(&self.name, &self.bridge, &self.subnet());
        std::fs::write(
            dir.join(format!("10-{}.conflist", self.name)),
            serde_json::to_vec_pretty(&conf).unwrap(),
        )
        .unwrap();
    }

    /// Whatever of the network's cells is still on the host: addresses
    /// reserved in host-local's store, nat rules, veths on the bridge, and
    /// the cells' namespace files under the daemon's runtime dir.
    fn leftovers(&self, d: &TestDaemon) -> Vec<String> {
        let mut left = Vec::new();
        if let Ok(entries) = std::fs::read_dir(Path::new(IPAM_STORE).join(&self.name)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name != "lock" && !name.starts_with("last_reserved_ip") {
                    left.push(format!("IPAM reservation {name}"));
                }
            }
        }
        let quoted = self.in_comments();
        for line in output("iptables-save", &["-t", "nat"]).lines() {
            if line.contains(&quoted) {
                left.push(format!("iptables: {line}"));
            }
        }
        for ns in output("ip", &["netns", "list"]).lines() {
            if ns.contains("aurae") {
                left.push(format!("ip netns: {ns}"));
            }
        }
        let veths = output("ip", &["-o", "link", "show", "master", &self.bridge]);
        left.extend(veths.lines().map(|l| format!("link: {l}")));
        let cells = d.dir.path().join("run").join("cells");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for line in mounts.lines() {
            if let Some(point) = line.split(' ').nth(4) {
                if Path::new(point).starts_with(&cells) {
                    left.push(format!("mount {point}"));
                }
            }
        }
        left
    }

    /// What a failed earlier run of the test left (a panicking test kills
    /// its daemon, so no DEL ran): nat rules of the network and the
    /// per-attachment chains they jump to, the bridge, the IPAM store.
    fn remove_host_state(&self) {
        let quoted = self.in_comments();
        let nat = output("iptables-save", &["-t", "nat"]);
        let ours: Vec<&str> = nat.lines().filter(|l| l.contains(&quoted)).collect();
        let mut chains = Vec::new();
        for rule in &ours {
            if let Some(spec) = rule.strip_prefix("-A ") {
                // iptables-save quotes as a shell does: let one split the rule.
                let _ = Command::new("sh")
                    .arg("-c")
                    .arg(format!("iptables -w -t nat -D {spec}"))
                    .output();
            }
            if let Some(target) = rule.split(" -j ").nth(1) {
                if target.starts_with("CNI-") && !target.starts_with("CNI-HOSTPORT-") {
                    chains.push(target.trim().to_string());
                }
            }
        }
        for chain in chains {
            let _ = Command::new("iptables")
                .args(["-w", "-t", "nat", "-F", &chain])
                .output();
            let _ = Command::new("iptables")
                .args(["-w", "-t", "nat", "-X", &chain])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = std::fs::remove_dir_all(Path::new(IPAM_STORE).join(&self.name));
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.remove_host_state();
    }
}

fn conf_dir(d: &TestDaemon) -> PathBuf {
    // Where TestDaemon points AURAED_CNI_CONF_DIR.
    d.dir.path().join("cni")
}

fn output(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Root, the registry, and the CNI plugins and iptables (installed by .ci/run).
fn fixture(test: &str) -> bool {
    if !require_registry(test) {
        return false;
    }
    for tool in [
        format!("{PLUGINS}/bridge"),
        format!("{PLUGINS}/host-local"),
        format!("{PLUGINS}/portmap"),
        "/usr/sbin/iptables-save".into(),
    ] {
        if !Path::new(&tool).exists() {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {tool} is missing, and CI must not skip the test");
            }
            eprintln!("skipping {test}: {tool} is missing (apt-get install containernetworking-plugins iptables)");
            return false;
        }
    }
    true
}

fn with_network(mut c: Cell, network: &str, ports: &[(u16, u16)]) -> Cell {
    c.network = network.to_string();
    c.ports = ports
        .iter()
        .map(|(h, p)| PortMapping {
            host_port: u32::from(*h),
            container_port: u32::from(*p),
            protocol: "tcp".into(),
        })
        .collect();
    c
}

/// Runs `cell` in the background.
fn spawn_cell(
    client: &Client,
    c: Cell,
) -> tokio::task::JoinHandle<Result<CellStatus, aurae_client::ClientError>> {
    let client = client.clone();
    tokio::spawn(async move { client.run_cell(c).await })
}

/// The IP of running cell `name` once its containers run.
async fn running_ip(client: &Client, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = client.list_cells().await.expect("list");
        if let Some(c) = list
            .cells
            .iter()
            .find(|c| c.meta.as_ref().is_some_and(|m| m.name == name))
        {
            let started = c
                .containers
                .iter()
                .all(|k| k.status == Status::Active as i32);
            if started && !c.ip.is_empty() {
                return c.ip.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "cell {name} not running: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole answer of the server at `addr`, retried while it is starting.
/// Nothing is sent: the cell's server answers every connection at once,
/// and a request it never read would make its kernel reset the connection
/// instead of closing it.
fn fetch(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut body = String::new();
                s.read_to_string(&mut body)?;
                Ok(body)
            });
        match attempt {
            Ok(body) if !body.is_empty() => return body,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("nothing from {addr}: {other:?}"),
        }
    }
}

/// The fixture, the test's network (not yet installed), a daemon and a client.
async fn start(test: &str, tag: &str, n: u8) -> Option<(TestNet, TestDaemon, Client)> {
    if !fixture(test) {
        return None;
    }
    let net = TestNet::new(tag, n);
    let d = TestDaemon::start().await;
    let c = d.client().await;
    Some((net, d, c))
}

/// How the first container of a finished cell ended.
fn exit_of(status: &CellStatus) -> &str {
    status.container_statuses[0]
        .meta
        .as_ref()
        .map(|m| m.message.as_str())
        .unwrap_or_default()
}

fn code(e: &aurae_client::ClientError) -> Option<tonic::Code> {
    e.status().map(|s| s.code())
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server in the cell on port 8080 that answers "hello from <cell>".
fn server_image() -> ImageSpec {
    ImageSpec::sh(
        r#"exec nc -ll -p 8080 -e sh -c 'printf "HTTP/1.0 200 OK\r\n\r\nhello from %s\n" "$(hostname)"'"#,
    )
}

async fn wait_gone(d: &TestDaemon, net: &TestNet) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = net.leftovers(d);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_container_must_reach_a_server_on_the_host_through_the_bridge() {
    let test = "a_container_must_reach_a_server_on_the_host_through_the_bridge";
    let Some((net, d, c)) = start(test, "out", 1).await else {
        return;
    };
    let host = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in host.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ =
                conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 16\r\n\r\nhello-from-host\n");
        }
    });
    let gw = net.gateway();
    // The host's DNS servers reach the cell too, those on loopback excepted.
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let dns_check = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .find(|a| a.parse::<IpAddr>().is_ok_and(|a| !a.is_loopback()))
        .map(|a| format!(" && grep -qx 'nameserver {a}' /etc/resolv.conf"))
        .unwrap_or_default();
    let client_image = push_derived(
        "net-client",
        "v1",
        &ImageSpec::sh(&format!(
            "wget -q -O /tmp/page http://{gw}:{port}/ && grep -q hello-from-host /tmp/page{dns_check}"
        )),
    )
    .await;
    let only_lo = push_derived(
        "net-none",
        "v1",
        &ImageSpec::sh("test \"$(ls /sys/class/net)\" = lo"),
    )
    .await;
    // Without a network configuration, cells keep loopback only, as before CNI.
    let status = c
        .run_cell(cell("net-unconfigured", &[("check", &only_lo)]))
        .await
        .expect("run");
    assert_eq!(exit_of(&status), "exited with code 0", "{status:?}");
    assert_eq!(status.ip, "");

    net.install(&d);
    let status = c
        .run_cell(cell("net-client", &[("wget", &client_image)]))
        .await
        .expect("run");
    assert_eq!(
        exit_of(&status),
        "exited with code 0",
        "the container fetched the host's page through the bridge: {status:?}\n{}",
        d.log()
    );
    assert!(
        net.contains(&status.ip),
        "cell IP {:?} in {}",
        status.ip,
        net.subnet()
    );

    // network "none" keeps loopback only even with a network configured.
    let status = c
        .run_cell(with_network(
            cell("net-none", &[("check", &only_lo)]),
            "none",
            &[],
        ))
        .await
        .expect("run");
    assert_eq!(exit_of(&status), "exited with code 0", "{status:?}");
    assert_eq!(status.ip, "");

    // Requests that cannot be honoured are refused before anything runs.
    let e = c
        .run_cell(with_network(cell("bad", &[("x", &only_lo)]), "nope", &[]))
        .await
        .expect_err("unknown network");
    assert_eq!(code(&e), Some(tonic::Code::InvalidArgument), "{e:?}");
    assert!(
        format!("{e:?}").contains(&net.name),
        "lists the known networks: {e:?}"
    );
    let e = c
        .run_cell(with_network(
            cell("bad", &[("x", &only_lo)]),
            "none",
            &[(8080, 80)],
        ))
        .await
        .expect_err("ports without a network");
    assert_eq!(code(&e), Some(tonic::Code::InvalidArgument), "{e:?}");

    // A chain that fails half-way (bridge done, the next plugin missing) is
    // undone at once: DEL of what the bridge set up.
    let half = TestNet::new("half", 4);
    let mut broken = auraed::cni::bridge_network(&half.name, &half.bridge, &half.subnet());
    broken["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "aurae-test-missing-plugin"}));
    std::fs::write(
        conf_dir(&d).join("20-half.conflist"),
        serde_json::to_vec(&broken).unwrap(),
    )
    .unwrap();
    let e = c
        .run_cell(with_network(
            cell("net-half", &[("x", &only_lo)]),
            &half.name,
            &[],
        ))
        .await
        .expect_err("a plugin is missing");
    assert_eq!(code(&e), Some(tonic::Code::FailedPrecondition), "{e:?}");
    assert!(
        format!("{e:?}").contains("aurae-test-missing-plugin"),
        "{e:?}"
    );
    assert!(
        Path::new(IPAM_STORE).join(&half.name).join("lock").exists(),
        "the bridge plugin ran (and reserved an address) before the failure"
    );
    let left = half.leftovers(&d);
    assert!(left.is_empty(), "left behind by the failed ADD: {left:#?}");

    let left = wait_gone(&d, &net).await;
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[tokio::test]
async fn a_host_must_reach_cells_by_ip_and_by_published_port() {
    let test = "a_host_must_reach_cells_by_ip_and_by_published_port";
    let Some((net, d, c)) = start(test, "srv", 2).await else {
        return;
    };
    let image = push_derived("net-server", "v1", &server_image()).await;
    net.install(&d);
    let host_port = free_port();
    let run_a = spawn_cell(
        &c,
        with_network(
            cell("net-a", &[("web", &image)]),
            &net.name,
            &[(host_port, 8080)],
        ),
    );
    let run_b = spawn_cell(&c, cell("net-b", &[("web", &image)]));
    let ip_a = running_ip(&c, "net-a").await;
    let ip_b = running_ip(&c, "net-b").await;
    assert!(
        net.contains(&ip_a) && net.contains(&ip_b),
        "{ip_a} {ip_b} in {}",
        net.subnet()
    );
    assert_ne!(ip_a, ip_b, "two cells, two addresses");
    assert!(
        !net.leftovers(&d).is_empty(),
        "the running cells are seen on the host (the check can fail)"
    );

    let by_ip = |ip: &str| SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 8080);
    let (a, b) = tokio::task::spawn_blocking({
        let (a, b) = (by_ip(&ip_a), by_ip(&ip_b));
        move || (fetch(a), fetch(b))
    })
    .await
    .unwrap();
    assert!(a.ends_with("hello from net-a\n"), "{a:?}");
    assert!(b.ends_with("hello from net-b\n"), "{b:?}");
    let published = tokio::task::spawn_blocking(move || {
        fetch(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)))
    })
    .await
    .unwrap();
    assert!(
        published.ends_with("hello from net-a\n"),
        "127.0.0.1:{host_port} reaches cell net-a: {published:?}"
    );
    let gw = net.gateway();
    let published = tokio::task::spawn_blocking(move || fetch(SocketAddr::from((gw, host_port))))
        .await
        .unwrap();
    assert!(published.ends_with("hello from net-a\n"), "{published:?}");

    // A host port is published once: a second cell asking for it is refused.
    let taken = c
        .run_cell(with_network(
            cell("net-c", &[("web", &image)]),
            "",
            &[(host_port, 9090)],
        ))
        .await
        .expect_err("port taken");
    assert_eq!(
        code(&taken),
        Some(tonic::Code::FailedPrecondition),
        "{taken:?}"
    );
    assert!(format!("{taken:?}").contains("net-a"), "{taken:?}");

    c.stop_cell("net-a").await.expect("stop");
    c.stop_cell("net-b").await.expect("stop");
    for run in [run_a, run_b] {
        run.await.unwrap().expect("RunCell ends after Stop");
    }
    let left = wait_gone(&d, &net).await;
    assert!(left.is_empty(), "left behind: {left:#?}");
}

#[tokio::test]
async fn a_killed_daemon_must_leave_no_network_after_a_restart() {
    let test = "a_killed_daemon_must_leave_no_network_after_a_restart";
    let Some((net, mut d, c)) = start(test, "crash", 3).await else {
        return;
    };
    let image = push_derived("net-crash", "v1", &server_image()).await;
    net.install(&d);
    let host_port = free_port();
    let run = spawn_cell(
        &c,
        with_network(
            cell("net-crash", &[("web", &image)]),
            "",
            &[(host_port, 8080)],
        ),
    );
    let ip = running_ip(&c, "net-crash").await;
    let body = tokio::task::spawn_blocking(move || {
        fetch(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)))
    })
    .await
    .unwrap();
    assert!(body.ends_with("hello from net-crash\n"), "{body:?}");

    d.kill9();
    let _ = run.await;
    let left = net.leftovers(&d);
    for what in ["IPAM reservation", "iptables", "link", "mount"] {
        assert!(
            left.iter().any(|l| l.starts_with(what)),
            "a killed daemon leaves the cell's {what} ({ip}): {left:#?}"
        );
    }
    // The RunCell's record, bound to its call, is what the next daemon acts on.
    let records = cell_records(&d);
    let record = records.get("net-crash").expect("the RunCell cell's record");
    assert_eq!(record["bound"], true, "{record}");
    assert!(
        !common::cgroups_under(&d, "cells").is_empty(),
        "a killed daemon leaves the cell's cgroups"
    );

    d.restart().await;
    let left = net.leftovers(&d);
    assert!(
        left.is_empty(),
        "the restarted daemon removed what its predecessor left: {left:#?}\n{}",
        d.log()
    );
    let c = d.client().await;
    assert!(c.list_cells().await.expect("list").cells.is_empty());
    assert!(
        TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)),
            Duration::from_secs(1)
        )
        .is_err(),
        "the published port is closed"
    );
    // Removed, never adopted: no cgroup and, once the daemon let go of its
    // database, no record.
    assert_eq!(common::cgroups_under(&d, "cells"), Vec::<PathBuf>::new());
    d.stop();
    assert!(cell_records(&d).is_empty(), "{:?}", cell_records(&d));
}

/// The cells' records in the state database of a daemon that is not
/// running (the database is the daemon's while it runs).
fn cell_records(d: &TestDaemon) -> std::collections::BTreeMap<String, serde_json::Value> {
    let db = auraed::state::StateDb::open(&d.state_dir).expect("open the state database");
    db.all(&auraed::state::Table::<serde_json::Value>::new(
        "cells.cells.v1",
    ))
    .expect("read the cells' records")
}

/// Stop of a detached cell is CRI's StopPodSandbox: CNI DEL runs and the
/// address goes back to the pool at once, while the cell stays listed
/// (PASSIVE, no address) until Remove, which then succeeds.
#[tokio::test]
async fn a_stopped_cell_must_give_its_address_back_before_it_is_removed() {
    let test = "a_stopped_cell_must_give_its_address_back_before_it_is_removed";
    let Some((net, d, c)) = start(test, "stop", 4).await else {
        return;
    };
    net.install(&d);
    let image = push_derived("net-stop", "v1", &ImageSpec::sh("sleep 1000")).await;
    let started = c
        .start_cell(with_network(cell("net-stop", &[("web", &image)]), "", &[]))
        .await
        .expect("start");
    let ip = started.ip.clone();
    assert!(net.contains(&ip), "{ip:?} in {}", net.subnet());
    let netns = d.dir.path().join("run/cells/net-stop/ns/net");
    let netns_arg = format!("--net={}", netns.display());
    let eth0 = || output("nsenter", &[&netns_arg, "ip", "-o", "addr", "show"]);
    assert!(
        eth0().contains(&ip),
        "the cell's namespace has {ip}: {}",
        eth0()
    );
    let held = net.leftovers(&d);
    assert!(
        held.iter().any(|l| l == &format!("IPAM reservation {ip}")),
        "{held:#?}"
    );

    c.stop_cell("net-stop").await.expect("stop");
    let listed = c.list_cells().await.expect("list").cells;
    assert_eq!(listed.len(), 1, "kept until removed: {listed:?}");
    assert_eq!(listed[0].status, Status::Passive as i32, "{listed:?}");
    assert_eq!(listed[0].ip, "", "no address once stopped: {listed:?}");
    // The namespace stays (mounted in the cell's directory) but holds no
    // address any more, and nothing of the network is left on the host.
    assert!(netns.exists());
    assert!(!eth0().contains(&ip), "{}", eth0());
    let left: Vec<String> = net
        .leftovers(&d)
        .into_iter()
        .filter(|l| !l.starts_with("mount"))
        .collect();
    assert!(left.is_empty(), "a stopped cell holds: {left:#?}");

    c.remove_cell("net-stop", false).await.expect("remove");
    assert!(c.list_cells().await.expect("list").cells.is_empty());
    let left = wait_gone(&d, &net).await;
    assert!(left.is_empty(), "left behind: {left:#?}\n{}", d.log());
}

/// `auraed --bootstrap` (what hack/up.sh runs) on a node without a network
/// configuration writes the default network, and leaves an existing one alone.
#[tokio::test]
async fn bootstrap_must_write_the_default_network_once() {
    if !common::require_root("bootstrap_must_write_the_default_network_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let conf = root.join("net.d");
    let bootstrap = || {
        let mut daemon = Command::new(env!("CARGO_BIN_EXE_auraed"))
            .arg("--bootstrap")
            .args(["--socket", &root.join("aurae.sock").display().to_string()])
            .args(["--ca-crt", &root.join("pki/ca.crt").display().to_string()])
            .args([
                "--server-crt",
                &root.join("pki/_signed.server.crt").display().to_string(),
            ])
            .args([
                "--server-key",
                &root.join("pki/server.key").display().to_string(),
            ])
            .args(["--state-dir", &root.join("state").display().to_string()])
            .args(["--runtime-dir", &root.join("run").display().to_string()])
            .args([
                "--cgroup-root",
                &format!("aurae-test-boot-{}", std::process::id()),
            ])
            .args(["--cni-conf-dir", &conf.display().to_string()])
            .env("HOME", root.join("home"))
            .env_remove("AURAED_AUTHZ_POLICY")
            .stderr(std::fs::File::create(root.join("log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !root.join("aurae.sock").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = daemon.wait().unwrap();
        let log = std::fs::read_to_string(root.join("log")).unwrap_or_default();
        assert!(status.success(), "auraed --bootstrap: {status}\n{log}");
    };
    bootstrap();
    let file = conf.join(auraed::cni::DEFAULT_FILE);
    let written = std::fs::read_to_string(&file).expect("the default network is written");
    let list = auraed::cni::load(&conf, None).expect("and is the default network");
    assert_eq!(list.name, auraed::cni::DEFAULT_NETWORK);
    assert_eq!(list.plugins[0]["bridge"], "aurae0");
    assert_eq!(
        list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
        auraed::cni::DEFAULT_SUBNET
    );
    assert!(list.has_capability("portMappings"));

    std::fs::write(&file, written.replace("aurae0", "mine0")).unwrap();
    bootstrap();
    assert!(
        std::fs::read_to_string(&file).unwrap().contains("mine0"),
        "a second bootstrap leaves the configuration alone"
    );
}
