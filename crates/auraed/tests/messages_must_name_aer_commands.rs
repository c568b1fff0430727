//! Messages a user reads name the aer command to run, not an RPC.

mod common;

use aurae_proto::meta::AuraeMeta;
use aurae_proto::runtime::Executable;
use common::{require_root, TestDaemon};

fn message(err: aurae_client::ClientError) -> (tonic::Code, String) {
    let s = err.status().expect("a gRPC status");
    (s.code(), s.message().to_string())
}

#[tokio::test]
async fn not_found_messages_must_name_the_aer_list_commands() {
    if !require_root("not_found_messages_must_name_the_aer_list_commands") {
        return;
    }
    let d = TestDaemon::start().await;
    let c = d.client().await;

    let (code, text) = message(c.stop_cell("nope").await.expect_err("no such cell"));
    assert_eq!(code, tonic::Code::NotFound);
    assert!(
        text.ends_with("see the running cells with aer cell list"),
        "{text}"
    );

    let (code, text) = message(
        c.disable(Executable {
            meta: Some(AuraeMeta {
                name: "nope".into(),
                message: String::new(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("no such scheduled executable"),
    );
    assert_eq!(code, tonic::Code::NotFound);
    assert!(
        text.ends_with("see the registered ones with aer schedule list"),
        "{text}"
    );
    for rpc in ["cells.Cells/", "ShowEnabled", "ShowDisabled"] {
        assert!(!text.contains(rpc), "{text}");
    }
}
