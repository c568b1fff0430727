//! The compiled protos must keep the original Aurae v0 field numbers and
//! method paths (shared/spec/wire.md): any drift breaks existing clients.

use std::collections::BTreeMap;

use aurae_proto::meta::{AuraeMeta, ProcessMeta, Status};
use aurae_proto::runtime::{Executable, ExecutableStatus};
use prost::Message;
use prost_types::FileDescriptorSet;

/// `package.Message.field = number` for every field of the seed, from wire.md.
const EXPECTED_FIELDS: &[(&str, i32)] = &[
    ("meta.AuraeMeta.name", 1),
    ("meta.AuraeMeta.message", 2),
    ("meta.ProcessMeta.pid", 1),
    ("observe.StatusRequest.meta", 1),
    ("observe.StatusResponse.meta", 1),
    ("observe.GetSubProcessStreamRequest.channel_type", 1),
    ("observe.GetSubProcessStreamRequest.process_id", 2),
    ("observe.LogItem.channel", 1),
    ("observe.LogItem.line", 2),
    ("observe.LogItem.timestamp", 3),
    ("runtime.Executable.meta", 1),
    ("runtime.Executable.command", 3),
    ("runtime.Executable.comment", 4),
    ("runtime.ExecutableStatus.meta", 1),
    ("runtime.ExecutableStatus.proc", 2),
    ("runtime.ExecutableStatus.status", 3),
    ("runtime.ExecutableStatus.stdout", 4),
    ("runtime.ExecutableStatus.stderr", 5),
    ("runtime.ExecutableStatus.exit_code", 6),
    ("runtime.Cell.meta", 1),
    ("runtime.Cell.containers", 2),
    ("runtime.CellStatus.meta", 1),
    ("runtime.CellStatus.status", 2),
    ("runtime.CellStatus.container_statuses", 3),
    ("runtime.Container.meta", 1),
    ("runtime.Container.image", 2),
    ("runtime.ContainerStatus.meta", 1),
    ("runtime.ContainerStatus.proc", 2),
    ("runtime.ContainerStatus.status", 3),
    ("runtime.Pod.meta", 1),
    ("runtime.Pod.cells", 2),
    ("runtime.PodStatus.meta", 1),
    ("runtime.PodStatus.status", 3),
    ("runtime.PodStatus.spawn_response", 4),
    ("runtime.PodStatus.instance", 5),
    ("runtime.PodStatus.cell_status", 6),
    ("runtime.Instance.meta", 1),
    ("runtime.Instance.is_root", 2),
    ("runtime.Instance.nested_instances", 3),
    ("runtime.VirtualMachine.meta", 1),
    ("runtime.VirtualMachine.name", 2),
    ("runtime.VirtualMachine.image", 3),
    ("runtime.VirtualMachineStatus.meta", 1),
    ("runtime.VirtualMachineStatus.status", 2),
    ("schedule.ShowEnabledRequest.meta", 1),
    ("schedule.ShowDisabledRequest.meta", 1),
    ("schedule.ShowEnabledResponse.meta", 1),
    ("schedule.ShowEnabledResponse.Executables", 2),
    ("schedule.ShowDisabledResponse.meta", 1),
    ("schedule.ShowDisabledResponse.Executables", 2),
    ("schedule.ExecutableEnableResponse.meta", 1),
    ("schedule.ExecutableDisableResponse.meta", 1),
    ("schedule.ExecutableDestroyResponse.meta", 1),
];

const EXPECTED_ENUMS: &[(&str, i32)] = &[
    ("meta.Status.STATUS_UNKNOWN", 0),
    ("meta.Status.STATUS_STANDBY", 1),
    ("meta.Status.STATUS_ACTIVE", 3),
    ("meta.Status.STATUS_PASSIVE", 4),
    ("meta.Status.STATUS_ERROR", 5),
    ("meta.Status.STATUS_COMPLETE", 6),
    ("observe.LogChannelType.CHANNEL_STDOUT", 0),
    ("observe.LogChannelType.CHANNEL_STDERR", 1),
];

const EXPECTED_METHODS: &[&str] = &[
    "/observe.Observe/Status",
    "/observe.Observe/GetAuraeDaemonLogStream",
    "/observe.Observe/GetSubProcessStream",
    "/runtime.Core/RunExecutable",
    "/runtime.Core/RunPod",
    "/runtime.Core/Spawn",
    "/runtime.Core/RunVirtualMachine",
    "/runtime.Core/RunCell",
    "/schedule.Schedule/ShowEnabled",
    "/schedule.Schedule/ShowDisabled",
    "/schedule.ScheduleExecutable/Enable",
    "/schedule.ScheduleExecutable/Disable",
    "/schedule.ScheduleExecutable/Destroy",
];

/// Fields added to seed messages (new numbers only, never a seed number
/// reused): decisions written down in docs/runtime.md.
const ADDITIVE_FIELDS: &[(&str, i32)] = &[
    ("observe.GetAuraeDaemonLogStreamRequest.tail", 1),
    ("observe.GetAuraeDaemonLogStreamRequest.no_follow", 2),
    ("observe.GetSubProcessStreamRequest.no_follow", 3),
    ("runtime.Executable.limits", 5),
    ("runtime.Executable.user", 6),
    ("runtime.Executable.group", 7),
    ("runtime.Limits.cpu_millis", 1),
    ("runtime.Limits.memory_bytes", 2),
    ("runtime.Limits.pids", 3),
    ("runtime.VirtualMachine.memory_mib", 4),
    ("runtime.VirtualMachine.vcpus", 5),
    ("runtime.VirtualMachine.network", 6),
    ("runtime.VirtualMachineStatus.proc", 3),
    ("runtime.SpawnRequest.name", 1),
    ("runtime.SpawnRequest.memory_mib", 2),
    ("runtime.SpawnRequest.vcpus", 3),
    ("runtime.SpawnResponse.name", 1),
    ("runtime.SpawnResponse.address", 2),
    ("runtime.SpawnResponse.proc", 3),
    ("runtime.Cell.network", 4),
    ("runtime.Cell.ports", 5),
    ("runtime.PortMapping.host_port", 1),
    ("runtime.PortMapping.container_port", 2),
    ("runtime.PortMapping.protocol", 3),
    ("runtime.CellStatus.ip", 4),
    ("runtime.ContainerStatus.exit_code", 4),
    ("runtime.Cell.limits", 3),
    ("runtime.Container.limits", 3),
    ("runtime.Container.command", 4),
    ("runtime.Container.args", 5),
    ("runtime.Container.env", 6),
    ("runtime.Container.working_dir", 7),
    ("runtime.ContainerStatus.limits", 5),
    ("runtime.ContainerStatus.oom_killed", 6),
];

const SEED_PACKAGES: &[&str] = &["meta", "observe", "runtime", "schedule"];

fn descriptor() -> FileDescriptorSet {
    FileDescriptorSet::decode(aurae_proto::FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

#[test]
fn seed_fields_keep_their_numbers_and_nothing_else_is_there() {
    let mut actual = BTreeMap::new();
    let mut enums = BTreeMap::new();
    for file in descriptor()
        .file
        .iter()
        .filter(|f| SEED_PACKAGES.contains(&f.package()))
    {
        for msg in &file.message_type {
            for field in &msg.field {
                actual.insert(
                    format!("{}.{}.{}", file.package(), msg.name(), field.name()),
                    field.number(),
                );
            }
        }
        for e in &file.enum_type {
            for v in &e.value {
                enums.insert(
                    format!("{}.{}.{}", file.package(), e.name(), v.name()),
                    v.number(),
                );
            }
        }
    }
    let expected: BTreeMap<String, i32> = EXPECTED_FIELDS
        .iter()
        .chain(ADDITIVE_FIELDS)
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(
        actual, expected,
        "seed message fields drifted from shared/spec/wire.md"
    );
    let expected: BTreeMap<String, i32> = EXPECTED_ENUMS
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(
        enums, expected,
        "seed enums drifted from shared/spec/wire.md"
    );
}

#[test]
fn seed_methods_keep_their_paths() {
    let mut actual = Vec::new();
    for file in descriptor()
        .file
        .iter()
        .filter(|f| SEED_PACKAGES.contains(&f.package()))
    {
        for svc in &file.service {
            for m in &svc.method {
                actual.push(format!("/{}.{}/{}", file.package(), svc.name(), m.name()));
            }
        }
    }
    actual.sort();
    let mut expected: Vec<String> = EXPECTED_METHODS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(actual, expected);
}

#[test]
fn executable_status_encodes_byte_for_byte() {
    let msg = ExecutableStatus {
        meta: Some(AuraeMeta {
            name: "n".into(),
            message: "m".into(),
        }),
        proc: Some(ProcessMeta { pid: 7 }),
        status: Status::Complete as i32,
        stdout: "o".into(),
        stderr: "e".into(),
        exit_code: "0".into(),
    };
    // Hand-encoded: tag = (field << 3) | wire type.
    let expected: &[u8] = &[
        0x0a, 6, 0x0a, 1, b'n', 0x12, 1, b'm', // 1: meta { 1: "n", 2: "m" }
        0x12, 2, 0x08, 7, // 2: proc { 1: 7 }
        0x18, 6, // 3: status = COMPLETE (6)
        0x22, 1, b'o', // 4: stdout
        0x2a, 1, b'e', // 5: stderr
        0x32, 1, b'0', // 6: exit_code
    ];
    assert_eq!(msg.encode_to_vec(), expected);
}

#[test]
fn executable_skips_field_two() {
    let exe = Executable {
        meta: None,
        command: "true".into(),
        comment: "c".into(),
        ..Default::default()
    };
    assert_eq!(
        exe.encode_to_vec(),
        [0x1a, 4, b't', b'r', b'u', b'e', 0x22, 1, b'c']
    );
}

#[test]
fn additive_services_keep_the_contract_paths() {
    let mut actual = Vec::new();
    for file in descriptor()
        .file
        .iter()
        .filter(|f| ["vms", "instances"].contains(&f.package()))
    {
        for svc in &file.service {
            for m in &svc.method {
                actual.push(format!(
                    "/{}.{}/{} {} -> {}",
                    file.package(),
                    svc.name(),
                    m.name(),
                    m.input_type(),
                    m.output_type()
                ));
            }
        }
    }
    actual.sort();
    let expected = [
        "/instances.Instances/Free .instances.FreeRequest -> .instances.FreeResponse",
        "/instances.Instances/Graph .instances.GraphRequest -> .runtime.Instance",
        "/vms.Vms/Delete .vms.VmRef -> .runtime.VirtualMachineStatus",
        "/vms.Vms/List .vms.ListVmsRequest -> .vms.ListVmsResponse",
        "/vms.Vms/Start .vms.VmRef -> .runtime.VirtualMachineStatus",
        "/vms.Vms/Stop .vms.VmRef -> .runtime.VirtualMachineStatus",
    ];
    assert_eq!(actual, expected);
}
