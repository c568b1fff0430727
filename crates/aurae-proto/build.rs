//! Compiles the seed's protos with protox (pure Rust: no system protoc) and
//! keeps the encoded descriptor set for server reflection and the
//! field-number test.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "meta.proto",
    "observe.proto",
    "runtime.proto",
    "schedule.proto",
    "cells.proto",
    "images.proto",
    "vms.proto",
    "instances.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    for p in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let fds = protox::compile(PROTOS, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("aurae_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::Codec")
        .compile_fds(fds)?;
    Ok(())
}
