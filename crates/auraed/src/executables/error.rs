//! Every way a RunExecutable call can fail before its process has a result.

use thiserror::Error;

use super::split::SplitError;
use crate::process::ProcessError;
use crate::validation::NameError;

use super::core::MAX_COMMAND_LEN;

#[derive(Debug, Error)]
pub enum ExecutableError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("command is {len} bytes long: at most {MAX_COMMAND_LEN} are allowed")]
    CommandTooLong { len: usize },
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("command is empty: give a program and its arguments, e.g. \"echo hi\" (use \"sh -c '...'\" for a shell)")]
    EmptyCommand,
    #[error("{0}")]
    Cgroup(String),
    #[error(transparent)]
    Limits(#[from] crate::cgroups::LimitError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}
