//! RunCell: a cell is a set of containers in one cgroup that share the
//! network, IPC and UTS namespaces of a sandbox, like a Kubernetes pod.
//!
//! The flow reads straight down: [`Cells::run`] validates the request
//! (`request`), pulls every image (`image`), then a task of its own (`run`)
//! composes the split operations of `ops`, each on the cell's record in the
//! state database (`store`): sandbox create (`setup`: `sandbox` namespaces
//! joined to a CNI network by `network`, `cgroup`, one bundle per container
//! from `spec` and `user`), container create and start through youki's
//! libcontainer in a helper process per container (`runtime` starts
//! `auraed container`, `helper` is that process), container wait through
//! the process layer (output, stop, exit), and remove (`mounts`, `cgroup`),
//! whatever happened. Detached cells (`detached`) are compositions of the
//! same operations. Dropping the `run` future (a client cancel or deadline)
//! stops the cell and still removes it. `crate::api::cells` serves the
//! additive `cells.Cells` API.
//!
//! On disk, under `<runtime_dir>/cells/<cell>/` (a private bind mount of
//! itself, so nothing mounted below propagates to other mount namespaces):
//! `ns/{net,ipc,uts}` (the sandbox's namespaces, bind-mounted nsfs files),
//! `etc/{hosts,hostname,resolv.conf}`, `state/` (libcontainer's state root) and
//! `containers/<container>/` (config.json and the image's root filesystem).

mod cgroup;
mod container;
mod core;
mod detached;
mod error;
mod exec;
pub mod exec_helper;
pub mod helper;
mod image;
mod limits;
mod mounts;
mod network;
mod ops;
mod overrides;
mod request;
mod run;
mod runtime;
mod sandbox;
mod setup;
mod spec;
mod store;
mod user;

pub use self::core::{CellResult, Cells, ContainerResult, RunningCell};
pub use error::CellError;
pub use exec::{ExecRequest, ExecResult};
pub use image::{ImageSource, MountedRootfs, PulledImage, RunConfig};
pub use network::{PortSpec, MAX_PORTS};
pub use overrides::ProcessOverrides;
pub use request::{CellSpec, ContainerSpec, MAX_CONTAINERS, MAX_IMAGE_LEN};
