//! auraed: one daemon that owns a Linux node behind one authenticated gRPC API.
//!
//! The flow of a call reads straight down: `server` (transport, TLS,
//! authorization) -> `api` (one handler per service: proto <-> domain types,
//! domain error -> status) -> the subsystem's core type (`executables`,
//! `schedule`, ...) -> the kernel layer (`process`, `cgroups`).
//!
//! The image store and the kernel-facing layer are crates of their own
//! (docs/architecture.md, "Crates"); they are re-exported here under their
//! old module names, so `crate::images`, `crate::cgroups`, `crate::mountinfo`
//! and `crate::error_chain` mean what they always did.

pub mod api;
pub mod bootstrap;
pub mod cells;
pub mod cni;
pub mod config;
pub mod daemon;
pub mod executables;
pub mod init;
pub mod instances;
pub mod logs;
pub mod observe;
pub mod pki;
pub mod process;
pub mod schedule;
pub mod server;
pub mod state;
#[cfg(test)]
mod test_script;
pub mod validation;
pub mod vms;
pub mod workload;

pub use aurae_images as images;
pub use aurae_kernel::{cgroups, error_chain, mountinfo, xattr};

#[cfg(test)]
use aurae_kernel::test_support;
