//! auraed: one daemon that owns a Linux node behind one authenticated gRPC API.
//!
//! The flow of a call reads straight down: `server` (transport, TLS,
//! authorization) -> `api` (one handler per service: proto <-> domain types,
//! domain error -> status) -> the subsystem's core type (`executables`,
//! `schedule`, ...) -> the kernel layer (`process`, `cgroups`).

pub mod api;
pub mod bootstrap;
pub mod cells;
pub mod cgroups;
pub mod cni;
pub mod config;
pub mod daemon;
pub mod error_chain;
pub mod executables;
pub mod images;
pub mod init;
pub mod instances;
pub mod logs;
pub mod mountinfo;
pub mod observe;
pub mod pki;
pub mod process;
pub mod schedule;
pub mod server;
pub mod state;
pub mod validation;
pub mod vms;
pub mod workload;

#[cfg(test)]
mod test_support;
