//! Nested instances: micro-VMs running auraed as PID 1 (see `crate::init`
//! for the guest side and docs/instances.md).

pub mod cpio;
