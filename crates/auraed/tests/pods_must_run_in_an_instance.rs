//! runtime.Core/RunPod: a fresh nested instance runs the pod's cell with
//! images only the parent can reach (the test registry on the parent's
//! loopback), handed over by the parent as a read-only OCI layout; the
//! answer carries each container's exit status, the spawn response and the
//! instance's graph; the instance is freed afterwards.

mod common;
mod instance_support;
mod spawn_support;

use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::runtime::{Cell, Container, Pod};
use common::{alive, eventually, require_registry, REGISTRY};
use instance_support::{image, require_instances};
use spawn_support::{spawning_daemon, InstanceNet};

fn am(name: &str) -> Option<AuraeMeta> {
    Some(AuraeMeta {
        name: name.into(),
        message: String::new(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_must_run_in_an_instance() {
    if !require_instances("pods_must_run_in_an_instance")
        || !require_registry("pods_must_run_in_an_instance")
    {
        return;
    }
    let image = image();
    let net = InstanceNet::new(2);
    let d = spawning_daemon(&image, &net).await;
    let c = d.client().await;
    let pod = Pod {
        meta: am("two"),
        cells: vec![Cell {
            meta: am("two"),
            containers: vec![
                // Its command reaches the instance: the image's is `sh`.
                Container {
                    meta: am("first"),
                    image: format!("{REGISTRY}/aurae/busybox:latest"),
                    limits: None,
                    args: vec!["sh".into(), "-c".into(), "exit $CODE".into()],
                    env: vec!["CODE=5".into()],
                    ..Default::default()
                },
                Container {
                    meta: am("second"),
                    image: format!("{REGISTRY}/aurae/layered:latest"),
                    limits: None,
                    ..Default::default()
                },
            ],
            network: "none".into(),
            ports: Vec::new(),
            limits: None,
        }],
    };
    let s = c
        .run_pod(pod)
        .await
        .unwrap_or_else(|e| panic!("run pod: {e:?}\n{}", d.log()));
    assert_eq!(s.status, Status::Complete as i32, "{s:?}");
    let spawned = s.spawn_response.clone().expect("spawn response");
    assert_eq!(spawned.name, "two", "the instance is named after the pod");
    assert!(
        spawned
            .address
            .starts_with(&format!("10.252.{}.", net.third)),
        "{s:?}"
    );
    let pid = spawned.proc.as_ref().expect("proc").pid;
    let graph = s.instance.clone().expect("the instance's graph");
    assert_eq!(
        graph.meta.as_ref().map(|m| m.name.as_str()),
        Some(spawned.name.as_str()),
        "{s:?}"
    );
    let cell = s.cell_status.clone().expect("cell status");
    assert_eq!(cell.container_statuses.len(), 2, "{cell:?}");
    for (k, (name, code)) in cell
        .container_statuses
        .iter()
        .zip([("first", 5), ("second", 0)])
    {
        assert_eq!(k.meta.as_ref().map(|m| m.name.as_str()), Some(name));
        assert_eq!(k.exit_code, Some(code), "{cell:?}");
        assert_eq!(k.status, Status::Complete as i32, "{cell:?}");
    }

    // Freed: hypervisor, TAP and files gone; not in the graph.
    assert!(
        eventually(60, || !alive(pid)).await,
        "the instance is freed"
    );
    assert!(net.ports().is_empty(), "{:?}", net.ports());
    assert!(!d.state_dir.join("instances").join(&spawned.name).exists());
    let g = c.instance_graph().await.expect("graph");
    assert!(g.nested_instances.is_empty(), "{g:?}");
    let e = c
        .free_instance(&spawned.name)
        .await
        .expect_err("already freed");
    assert_eq!(e.status().map(|s| s.code()), Some(tonic::Code::NotFound));
}
