//! `runtime.Core/RunExecutable`: run a host command in a transient cgroup and
//! return its whole result.

mod core;
mod error;
pub mod split;

pub use core::{Executables, RunRequest, RunResult, RESPONSE_OUTPUT_LIMIT};
pub use error::ExecutableError;
pub use split::{parse_command, split_command, CommandError, MAX_COMMAND_LEN};
