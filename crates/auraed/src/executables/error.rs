//! Every way a RunExecutable call can fail before its process has a result.

use thiserror::Error;

use super::split::CommandError;
use crate::process::ProcessError;
use crate::validation::NameError;

#[derive(Debug, Error)]
pub enum ExecutableError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{0}")]
    Cgroup(String),
    #[error(transparent)]
    Limits(#[from] crate::cgroups::LimitError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}
