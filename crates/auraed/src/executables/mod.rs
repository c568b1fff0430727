//! `runtime.Core/RunExecutable`: run a host command in a transient cgroup and
//! return its whole result.

mod core;
mod service;
pub mod split;

pub use core::Executables;
pub use service::CoreService;
pub use split::split_command;
