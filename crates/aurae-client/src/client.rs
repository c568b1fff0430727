//! `Client`: one mTLS channel to auraed and a typed method per RPC (in
//! `rpc/`, one file per service).

use aurae_proto::cells::cells_client::CellsClient;
use aurae_proto::images::images_client::ImagesClient;
use aurae_proto::instances::instances_client::InstancesClient;
use aurae_proto::observe::observe_client::ObserveClient;
use aurae_proto::runtime::core_client::CoreClient;
use aurae_proto::schedule::schedule_client::ScheduleClient;
use aurae_proto::schedule::schedule_executable_client::ScheduleExecutableClient;
use aurae_proto::vms::vms_client::VmsClient;
use tonic::transport::Channel;

use crate::config::AuraeConfig;
use crate::error::ClientError;
use crate::transport;

/// Largest reply accepted: a RunExecutable reply carries up to 16 MiB of
/// stdout and of stderr (plus markers), above tonic's 4 MiB default.
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// A connection to auraed. Cloning is cheap and clones share the
/// connection; every method takes `&self`, so calls may run concurrently.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
}

impl Client {
    /// Connects with the identity and target of `config`.
    pub async fn connect(config: &AuraeConfig) -> Result<Self, ClientError> {
        Ok(Self {
            channel: transport::connect(config).await?,
        })
    }

    /// Connects with the first config of the discovery order
    /// (`$AURAE_CONFIG`, `~/.aurae/config`, `/etc/aurae/config`).
    pub async fn from_default_config() -> Result<Self, ClientError> {
        Self::connect(&AuraeConfig::from_default_locations()?).await
    }

    /// Wraps an existing channel, e.g. one with custom layers.
    pub fn from_channel(channel: Channel) -> Self {
        Self { channel }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    // Raw generated clients, for what the typed methods do not cover:
    // deadlines (`tonic::Request::set_timeout`), metadata, compression.

    pub fn core(&self) -> CoreClient<Channel> {
        CoreClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES)
    }

    pub fn observe(&self) -> ObserveClient<Channel> {
        ObserveClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES)
    }

    pub fn schedule(&self) -> ScheduleClient<Channel> {
        ScheduleClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES)
    }

    pub fn schedule_executable(&self) -> ScheduleExecutableClient<Channel> {
        ScheduleExecutableClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_REPLY_BYTES)
    }

    pub fn cells(&self) -> CellsClient<Channel> {
        CellsClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES)
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES)
    }

    pub fn vms(&self) -> VmsClient<Channel> {
        VmsClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES)
    }

    pub fn instances(&self) -> InstancesClient<Channel> {
        InstancesClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY_BYTES)
    }
}
