//! The kernel-facing layer of auraed: what talks to cgroupfs and reads the
//! mount table, with no knowledge of the API, workloads or images above it.
//!
//! [`cgroups`] drives cgroup v1 and v2 behind one trait, [`mountinfo`] answers
//! "what is mounted below this directory", [`xattr`] sets and reads extended
//! attributes (nix has no calls for them), and [`error_chain`] is the one
//! formatter of error chains (it sits here, at the bottom of the crate graph,
//! because the cgroup drivers log with it and every crate above may use it).

pub mod cgroups;
pub mod error_chain;
pub mod mountinfo;
pub mod xattr;

#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
