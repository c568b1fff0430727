//! Spawning processes into their own cgroup, capturing their output,
//! reaping them, and stopping every process of the cgroup on request.
//!
//! A process is either attached (RunExecutable, containers: the daemon
//! reads its output and it ends with the call or the daemon) or detached
//! (scheduled executables, VMs: a small monitor process, `auraed monitor`,
//! holds its output pipes and its exit status, so it outlives a restart
//! of the daemon and is adopted again).
//!
//! Every workload kind (RunExecutable, scheduled executables, and later the
//! hypervisor processes of VMs) goes through `Processes::spawn`, so cgroup
//! placement, output fan-out and clean-up live once, here.

mod detached;
mod error;
mod exit;
mod identity;
mod launch;
mod leftovers;
pub mod monitor;
mod output;
mod pidfd;
mod pool;
mod signals;
mod spawn;
mod supervise;
mod terminal;
mod vfork;

pub(crate) use detached::{start_time, start_time_in};
pub use detached::{Adopted, DetachedRecord};
pub use error::ProcessError;
pub use exit::ExitKind;
pub use identity::{resolve as resolve_identity, Identity, IdentityError};
pub(crate) use launch::launch_with;
pub(crate) use monitor::{ignore_stop_signals, supervise as supervise_to_end, wait_child, Started};
pub(crate) use output::{blocking_io, open_log, OutputLog};
pub(crate) use pidfd::{pidfd_open, ChildExit};
pub use pool::{CgroupFiles, CgroupPool, PoolCgroup};
pub use signals::listen as listen_for_signal;
pub(crate) use spawn::Held;
pub use spawn::{ProcessSpec, Processes, WorkloadDefaults};
pub use supervise::{Finished, ProcessHandle};
pub use terminal::{detach_controlling_terminal, Terminal};
pub(crate) use vfork::{open_placement, resolve};
