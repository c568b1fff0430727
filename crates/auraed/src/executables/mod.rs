//! `runtime.Core/RunExecutable`: run a host command in a transient cgroup and
//! return its whole result.

mod core;
mod error;
pub mod split;

pub use core::{Executables, RunRequest, RunResult, MAX_COMMAND_LEN, RESPONSE_OUTPUT_LIMIT};
pub use error::ExecutableError;
pub use split::split_command;
