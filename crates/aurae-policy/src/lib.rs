//! The authorization policy of auraed, shared by the daemon (which applies
//! it) and `aer policy check` (which checks a file before it is deployed).
//!
//! ```toml
//! [[allow]]
//! identities = ["admin"]          # "*" matches every authenticated identity
//! methods = ["*"]
//!
//! [[allow]]
//! identities = ["ci", "viewer"]
//! methods = ["observe.Observe", "schedule.Schedule", "runtime.Core/RunExecutable"]
//! ```
//! Health checks and reflection are open to every authenticated identity.
//! Every service and method a policy names must be one the daemon serves:
//! a typo is an error, never a rule that silently matches nothing.

mod catalog;
mod closest;
mod policy;

pub use catalog::Catalog;
pub use policy::{Policy, PolicyError, Problem};
