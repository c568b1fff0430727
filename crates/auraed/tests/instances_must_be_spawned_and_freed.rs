//! runtime.Core/Spawn boots a nested auraed (PID 1 of a micro-VM) that
//! answers over mTLS with the certificate the parent issued it (naming it
//! and its address), runs executables, refuses a client of another CA; the
//! graph shows it; instances.Instances/Free removes everything of it; a
//! parent killed with SIGKILL leaves nothing running after its restart;
//! without a CA key Spawn is FAILED_PRECONDITION.

mod common;
mod instance_support;
mod spawn_support;

use std::path::Path;
use std::time::Duration;

use aurae_client::Client;
use aurae_proto::runtime::SpawnRequest;
use common::{alive, eventually, exe, TestDaemon};
use instance_support::{image, require_instances, validity};
use spawn_support::{instance_client, spawning_daemon, InstanceNet};

fn spawn_request(name: &str) -> SpawnRequest {
    SpawnRequest {
        name: name.into(),
        memory_mib: 512,
        vcpus: 1,
    }
}

/// The SANs of the server certificate the parent put into the instance's
/// initramfs: `DNS:name` and `IP:a.b.c.d`.
fn sans_of_issued(d: &TestDaemon, name: &str) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let initramfs = d
        .state_dir
        .join("instances")
        .join(name)
        .join("initramfs.cpio");
    let bytes = std::fs::read(&initramfs).expect("the instance's initramfs");
    let text = String::from_utf8_lossy(&bytes);
    // The last: the per-instance archive follows the image (whose auraed
    // names the file too, and whose CA bundle holds certificates).
    let at = text
        .rfind("_signed.server.crt")
        .expect("the server certificate entry");
    let rest = &text[at..];
    let begin = rest.find("-----BEGIN CERTIFICATE-----").expect("pem");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&rest.as_bytes()[begin..]).expect("pem");
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(&pem.contents).expect("x509");
    let ca = std::fs::read_to_string(d.pki_dir.join("ca.crt")).expect("ca");
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca.as_bytes()).expect("ca pem");
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca.contents).expect("ca");
    assert!(
        cert.verify_signature(Some(ca.public_key())).is_ok(),
        "issued by the parent's CA"
    );
    cert.subject_alternative_name()
        .expect("san")
        .expect("sans")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                format!("IP:{}.{}.{}.{}", b[0], b[1], b[2], b[3])
            }
            other => format!("{other:?}"),
        })
        .collect()
}

fn qemu_pids_of(name: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let argv: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv
            .first()
            .is_some_and(|a| a.ends_with("qemu-system-x86_64"))
            && argv.windows(2).any(|w| w[0] == "-name" && w[1] == name)
            && argv.iter().any(|a| a.contains("aurae.port="))
        {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_must_be_spawned_and_freed() {
    if !require_instances("instances_must_be_spawned_and_freed") {
        return;
    }
    let image = image();

    // Without a readable CA key: refused, saying so, nothing made.
    let no_key = TestDaemon::builder()
        .arg("--ca-key")
        .arg("/nonexistent/ca.key")
        .arg("--instance-image-dir")
        .arg(image.display().to_string())
        .start()
        .await;
    let e = no_key
        .client()
        .await
        .spawn(spawn_request("nokey"))
        .await
        .expect_err("no ca key");
    let status = e.status().expect("a grpc status");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("--ca-key"), "{status:?}");
    assert!(qemu_pids_of("nokey").is_empty());
    drop(no_key);

    let net = InstanceNet::new(1);
    let mut d = spawning_daemon(&image, &net).await;
    let parent = d.client().await;
    let r = parent
        .spawn(spawn_request("web"))
        .await
        .unwrap_or_else(|e| {
            panic!("spawn: {e:?}\n{}", d.log());
        });
    assert_eq!(r.name, "web");
    let ip = format!("10.252.{}.2", net.third);
    assert_eq!(r.address, format!("{ip}:8080"));
    let pid = r.proc.as_ref().expect("proc").pid;
    assert!(alive(pid), "the hypervisor runs");
    assert_eq!(qemu_pids_of("web"), vec![pid]);
    let taps = net.ports();
    assert_eq!(taps.len(), 1, "one tap on the bridge: {taps:?}");

    // The certificate the parent issued: the instance's name and address.
    let sans = sans_of_issued(&d, "web");
    assert_eq!(sans, vec!["DNS:web".to_string(), format!("IP:{ip}")]);
    // On the wire: verified by its name and by its address, not by another name.
    let by_name = instance_client(&d, &r.address, "web")
        .await
        .expect("by name");
    let st = by_name.status().await.expect("status of the instance");
    assert_eq!(
        st.meta.as_ref().map(|m| m.name.as_str()),
        Some("web"),
        "{st:?}"
    );
    let by_ip = instance_client(&d, &r.address, &ip)
        .await
        .expect("by address");
    by_ip.status().await.expect("status by address");
    let wrong = match instance_client(&d, &r.address, "other").await {
        Ok(c) => c.status().await.is_err(),
        Err(_) => true,
    };
    assert!(wrong, "a certificate for another name is refused");

    // RunExecutable in the instance, where auraed is PID 1.
    let out = by_name
        .run_executable(exe("sh -c 'echo hello from $(cat /proc/1/comm)'"))
        .await
        .expect("run in the instance");
    assert_eq!(out.exit_code, "0", "{out:?}");
    assert!(out.stdout.starts_with("hello from "), "{out:?}");

    // A client certificate of another CA is refused.
    let (from, to) = validity();
    let other = auraed::pki::generate_ca(from, to).expect("other ca");
    let foreign =
        auraed::pki::issue_client_with_validity(&other.cert_pem, &other.key_pem, "admin", from, to)
            .expect("foreign client");
    let ca_pem = std::fs::read_to_string(d.pki_dir.join("ca.crt")).expect("ca");
    let cfg = instance_support::client_config(
        &d.dir.path().join("foreign"),
        &ca_pem,
        &foreign,
        "web",
        &r.address,
    );
    let refused = match Client::connect(&cfg).await {
        Ok(c) => c.status().await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client of another CA is refused");

    // The graph: this daemon, the root, with the instance (which answered).
    let g = parent.instance_graph().await.expect("graph");
    assert!(g.is_root);
    assert_eq!(g.meta.as_ref().map(|m| m.name.as_str()), Some("test-node"));
    assert_eq!(g.nested_instances.len(), 1, "{g:?}");
    let n = &g.nested_instances[0];
    assert!(!n.is_root);
    let m = n.meta.clone().unwrap_or_default();
    assert_eq!((m.name.as_str(), m.message.as_str()), ("web", ""), "{g:?}");

    // Free: hypervisor, TAP, files and the entry gone; a second Free is NOT_FOUND.
    let dir = d.state_dir.join("instances").join("web");
    assert!(dir.is_dir());
    parent.free_instance("web").await.expect("free");
    assert!(
        eventually(60, || !alive(pid)).await,
        "the hypervisor is gone"
    );
    assert!(net.ports().is_empty(), "the tap is gone: {:?}", net.ports());
    for t in &taps {
        assert!(!Path::new("/sys/class/net").join(t).exists(), "{t} is gone");
    }
    assert!(!dir.exists(), "the instance's files are gone");
    let g = parent.instance_graph().await.expect("graph");
    assert!(g.nested_instances.is_empty(), "{g:?}");
    let e = parent.free_instance("web").await.expect_err("second free");
    assert_eq!(
        e.status().map(|s| s.code()),
        Some(tonic::Code::NotFound),
        "{e:?}"
    );

    // A parent killed with SIGKILL: its next start removes the instance.
    let r = parent
        .spawn(spawn_request("crash"))
        .await
        .expect("spawn crash");
    let pid = r.proc.as_ref().expect("proc").pid;
    assert!(alive(pid));
    drop(parent);
    d.kill9();
    d.restart().await;
    assert!(
        eventually(60, || !alive(pid)).await,
        "the instance of the killed parent is stopped at the restart"
    );
    assert!(qemu_pids_of("crash").is_empty());
    assert!(net.ports().is_empty(), "{:?}", net.ports());
    assert!(!d.state_dir.join("instances").join("crash").exists());
    let g = d.client().await.instance_graph().await.expect("graph");
    assert!(g.nested_instances.is_empty(), "{g:?}");
    // Nothing is left on a graceful exit either.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {}).await;
    d.stop();
}
