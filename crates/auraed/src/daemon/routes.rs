//! Every gRPC service of the daemon (from `crate::api`) in one `Routes`, with
//! health (every served service SERVING) and reflection.

use aurae_proto::cells::cells_server::CellsServer;
use aurae_proto::images::images_server::ImagesServer;
use aurae_proto::instances::instances_server::InstancesServer;
use aurae_proto::observe::observe_server::ObserveServer;
use aurae_proto::runtime::core_server::CoreServer;
use aurae_proto::schedule::schedule_executable_server::ScheduleExecutableServer;
use aurae_proto::schedule::schedule_server::ScheduleServer;
use aurae_proto::vms::vms_server::VmsServer;
use tonic::service::Routes;

use super::inflight::InFlight;
use super::DaemonError;
use crate::api::{
    CellsService, CoreService, ImagesService, InstancesService, ObserveService,
    ScheduleExecutableService, ScheduleService, VmsService,
};

pub struct Services {
    pub observe: ObserveService,
    pub core: CoreService,
    pub schedule: ScheduleService,
    pub schedule_executable: ScheduleExecutableService,
    pub images: ImagesService,
    pub cells: CellsService,
    pub vms: VmsService,
    pub instances: InstancesService,
}

/// Every service, each call counted by `inflight` until it is answered.
pub async fn build(s: Services, inflight: &InFlight) -> Result<Routes, DaemonError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ObserveServer<ObserveService>>().await;
    health.set_serving::<CoreServer<CoreService>>().await;
    health
        .set_serving::<ScheduleServer<ScheduleService>>()
        .await;
    health
        .set_serving::<ScheduleExecutableServer<ScheduleExecutableService>>()
        .await;
    health.set_serving::<ImagesServer<ImagesService>>().await;
    health.set_serving::<CellsServer<CellsService>>().await;
    health.set_serving::<VmsServer<VmsService>>().await;
    health
        .set_serving::<InstancesServer<InstancesService>>()
        .await;
    let mut builder = Routes::builder();
    builder
        .add_service(health_service)
        .add_service(ObserveServer::new(s.observe))
        .add_service(CoreServer::new(s.core))
        .add_service(ScheduleServer::new(s.schedule))
        .add_service(ScheduleExecutableServer::new(s.schedule_executable))
        .add_service(ImagesServer::new(s.images))
        .add_service(CellsServer::new(s.cells))
        .add_service(VmsServer::new(s.vms))
        .add_service(InstancesServer::new(s.instances));
    // Both versions: grpcurl and older tools still ask v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(aurae_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    builder.add_service(reflection().build_v1()?);
    builder.add_service(reflection().build_v1alpha()?);
    let mut routes = builder.routes();
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.layer(inflight.clone());
    Ok(routes)
}
