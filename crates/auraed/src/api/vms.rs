//! `vms.Vms` (List, Start, Stop, Delete) and the conversion used by
//! `runtime.Core/RunVirtualMachine`: thin handlers over [`Vms`].

use std::sync::Arc;

use aurae_proto::meta::ProcessMeta;
use aurae_proto::runtime::{VirtualMachine, VirtualMachineStatus};
use aurae_proto::vms::vms_server::Vms as VmsApi;
use aurae_proto::vms::{ListVmsRequest, ListVmsResponse, VmInfo, VmProgress, VmRef};
use tonic::{Request, Response, Status};

use super::{caller, meta, name_in, status};
use crate::vms::{VmSpec, VmView, Vms};

/// A `VirtualMachine` as the VMs subsystem takes it: `meta.name`, or `name`
/// when `meta.name` is empty; both given must agree.
pub fn vm_spec(vm: VirtualMachine, caller: String) -> Result<VmSpec, Status> {
    let meta_name = name_in(&vm.meta);
    let name = match (meta_name.as_str(), vm.name.as_str()) {
        ("", n) | (n, "") => n.to_string(),
        (a, b) if a == b => a.to_string(),
        (a, b) => {
            return Err(Status::invalid_argument(format!(
                "meta.name {a:?} and name {b:?} differ: give one of them"
            )))
        }
    };
    Ok(VmSpec {
        name,
        image: vm.image,
        memory_mib: vm.memory_mib,
        vcpus: vm.vcpus,
        network: vm.network,
        caller,
    })
}

pub fn vm_status(v: VmView) -> VirtualMachineStatus {
    VirtualMachineStatus {
        meta: meta(v.name, v.message),
        status: status(v.status),
        proc: v.pid.map(|pid| ProcessMeta { pid }),
    }
}

fn vm_info(v: VmView) -> VmInfo {
    VmInfo {
        meta: meta(v.name, v.message),
        image: v.image,
        digest: v.digest,
        status: status(v.status),
        proc: v.pid.map(|pid| ProcessMeta { pid }),
        progress: v.progress.map(|p| VmProgress {
            phase: p.phase.as_str().to_string(),
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
        }),
    }
}

pub async fn run_virtual_machine(
    vms: &Arc<Vms>,
    req: Request<VirtualMachine>,
) -> Result<VirtualMachineStatus, Status> {
    let caller = caller(&req);
    let spec = vm_spec(req.into_inner(), caller)?;
    Ok(vm_status(vms.run(spec).await?))
}

pub struct VmsService {
    vms: Arc<Vms>,
}

impl VmsService {
    pub fn new(vms: Arc<Vms>) -> Self {
        Self { vms }
    }
}

#[tonic::async_trait]
impl VmsApi for VmsService {
    async fn list(
        &self,
        _req: Request<ListVmsRequest>,
    ) -> Result<Response<ListVmsResponse>, Status> {
        let vms = self.vms.list().into_iter().map(vm_info).collect();
        Ok(Response::new(ListVmsResponse { vms }))
    }

    async fn start(&self, req: Request<VmRef>) -> Result<Response<VirtualMachineStatus>, Status> {
        let v = self.vms.start_vm(req.into_inner().name).await?;
        Ok(Response::new(vm_status(v)))
    }

    async fn stop(&self, req: Request<VmRef>) -> Result<Response<VirtualMachineStatus>, Status> {
        let v = self.vms.stop_vm(req.into_inner().name).await?;
        Ok(Response::new(vm_status(v)))
    }

    async fn delete(&self, req: Request<VmRef>) -> Result<Response<VirtualMachineStatus>, Status> {
        let v = self.vms.delete(req.into_inner().name).await?;
        Ok(Response::new(vm_status(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurae_proto::meta::AuraeMeta;

    fn vm(meta_name: &str, name: &str) -> VirtualMachine {
        VirtualMachine {
            meta: Some(AuraeMeta {
                name: meta_name.into(),
                message: String::new(),
            }),
            name: name.into(),
            image: "http://h/d.qcow2".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_name_comes_from_either_field() {
        assert_eq!(vm_spec(vm("a", ""), String::new()).expect("meta").name, "a");
        assert_eq!(vm_spec(vm("", "b"), String::new()).expect("name").name, "b");
        assert_eq!(
            vm_spec(vm("c", "c"), String::new()).expect("both").name,
            "c"
        );
        let e = vm_spec(vm("a", "b"), String::new()).expect_err("differ");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }
}
