//! Every way a schedule call can fail (mapped to a gRPC status in `crate::api`).

use thiserror::Error;

use crate::cgroups::CgroupError;
use crate::executables::CommandError;
use crate::validation::NameError;

use super::MAX_COMMENT_LEN;

#[derive(Debug, Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("comment is {len} bytes long: at most {MAX_COMMENT_LEN} are allowed")]
    CommentTooLong { len: usize },
    #[error(
        "no scheduled executable is named {name:?}: see the registered ones with aer schedule list"
    )]
    NotFound { name: String },
    #[error(
        "{name:?} is already registered ({state}) with command {existing:?}, not {requested:?}: destroy it first to register the new command"
    )]
    AlreadyExists {
        name: String,
        state: &'static str,
        existing: String,
        requested: String,
    },
    #[error(
        "{name:?} is already registered ({state}) with {existing}, not {requested}: destroy it first to change them"
    )]
    SettingsDiffer {
        name: String,
        state: &'static str,
        existing: String,
        requested: String,
    },
    #[error(transparent)]
    Limits(#[from] crate::cgroups::LimitError),
    #[error(transparent)]
    Identity(#[from] crate::process::IdentityError),
    #[error("auraed is shutting down: retry once it is back")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] crate::state::StateError),
    #[error("the schedule database task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}
