//! Spawning processes into their own cgroup, capturing their output,
//! reaping them, and stopping every process of the cgroup on request.
//!
//! Every workload kind (RunExecutable, scheduled executables, and later the
//! hypervisor processes of VMs) goes through `Processes::spawn`, so cgroup
//! placement, output fan-out and clean-up live once, here.

mod capture;
mod error;
mod exit;
mod pidfd;
mod spawn;
mod supervise;
mod vfork;

pub(crate) use capture::pump;
pub use capture::Captured;
pub use error::ProcessError;
pub use exit::ExitKind;
pub(crate) use pidfd::ChildExit;
pub use spawn::{ProcessSpec, Processes};
pub use supervise::{Finished, ProcessHandle};
