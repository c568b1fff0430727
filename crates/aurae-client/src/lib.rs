//! Rust client for auraed: finds the client config, connects with mutual
//! TLS over the daemon's Unix socket or TCP, and offers a typed async method
//! for every RPC.
//!
//! ```no_run
//! # async fn demo() -> Result<(), aurae_client::ClientError> {
//! use aurae_client::Client;
//! use aurae_proto::runtime::Executable;
//!
//! let client = Client::from_default_config().await?;
//! let status = client
//!     .run_executable(Executable { command: "echo hi".into(), ..Default::default() })
//!     .await?;
//! print!("{}", status.stdout);
//! # Ok(()) }
//! ```

mod access;
mod client;
mod coalesce;
pub mod config;
mod error;
mod rpc;
pub mod size;
mod transport;

pub use client::Client;
pub use config::{AuraeConfig, AuthConfig, ConfigError, SystemConfig};
pub use error::ClientError;
pub use transport::Target;

/// The generated messages and clients, so callers need no second dependency.
pub use aurae_proto as proto;
