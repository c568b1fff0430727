use thiserror::Error;

use super::identity::IdentityError;
use crate::cgroups::CgroupError;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("command is empty")]
    EmptyCommand,
    #[error("cannot start {program:?}: {source}")]
    Start {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot create the log of {program:?}: {source}")]
    Log {
        program: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cgroup {path}: {source}")]
    Cgroup { path: String, source: CgroupError },
    #[error("waiting for pid {pid}: {source}")]
    Wait { pid: i32, source: std::io::Error },
    #[error("pid {pid} was left running for the next daemon")]
    Abandoned { pid: i32 },
    #[error("pid {pid}: {why}")]
    Lost { pid: i32, why: String },
    #[error("the supervisor of pid {pid} ended without a result")]
    SupervisorGone { pid: i32 },
}
