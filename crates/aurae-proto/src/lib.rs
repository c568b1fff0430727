//! The Aurae v0 API (seed protos) plus additive services, generated at build time.

#![allow(clippy::derive_partial_eq_without_eq, clippy::large_enum_variant)]

pub mod codec;

pub mod meta {
    tonic::include_proto!("meta");
}
pub mod observe {
    tonic::include_proto!("observe");
}
pub mod runtime {
    tonic::include_proto!("runtime");
}
pub mod schedule {
    tonic::include_proto!("schedule");
}
pub mod cells {
    tonic::include_proto!("cells");
}
pub mod images {
    tonic::include_proto!("images");
}
pub mod vms {
    tonic::include_proto!("vms");
}
pub mod instances {
    tonic::include_proto!("instances");
}

/// Encoded `FileDescriptorSet` of every proto above, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/aurae_descriptor.bin"));
