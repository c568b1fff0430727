//! The QEMU command line of a VM: q35, the chosen accelerator, the overlay
//! as a virtio disk, user-mode networking (or a TAP, or none), the serial console on stdout
//! (which the monitor writes to the VM's log) and QMP on a Unix socket.

use std::path::Path;

use super::accel::Accel;

/// The hypervisor binary, looked up in `PATH`.
pub const QEMU: &str = "qemu-system-x86_64";

pub struct QemuArgs<'a> {
    pub name: &'a str,
    pub accel: Accel,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub overlay: &'a Path,
    pub qmp: &'a Path,
    /// `None`: user-mode networking; `Some("")`: no NIC; `Some(tap)`: that TAP.
    pub tap: Option<&'a str>,
}

pub fn argv(a: &QemuArgs<'_>) -> Vec<String> {
    let mut v: Vec<String> = [
        QEMU,
        "-name",
        a.name,
        "-M",
        "q35",
        "-accel",
        a.accel.qemu_name(),
        "-nodefaults",
        "-display",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(console_args());
    let netdev = match a.tap {
        None => Some("user,id=net0".to_string()),
        Some("") => None,
        Some(tap) => Some(format!("tap,id=net0,ifname={tap},script=no,downscript=no")),
    };
    if let Some(netdev) = netdev {
        // Empty romfile: no iPXE option ROM needed (nor always installed).
        v.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            "virtio-net-pci,netdev=net0,romfile=".into(),
        ]);
    }
    v.extend([
        "-m".into(),
        a.memory_mib.to_string(),
        "-smp".into(),
        a.vcpus.to_string(),
        "-drive".into(),
        format!(
            "file={},if=virtio,format=qcow2,cache=writeback",
            qemu_escape(a.overlay)
        ),
    ]);
    v.extend(qmp_args(a.qmp));
    v
}

/// The serial console on stdout, which the process monitor writes to the
/// workload's log; no input from the daemon.
pub(crate) fn console_args() -> Vec<String> {
    [
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// QMP on a Unix socket that the daemon connects to when it wants.
pub(crate) fn qmp_args(qmp: &Path) -> [String; 2] {
    [
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qemu_escape(qmp)),
    ]
}

/// QEMU option values separate with ','; a literal comma is doubled.
pub(crate) fn qemu_escape(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_carries_every_choice() {
        let v = argv(&QemuArgs {
            name: "web",
            accel: Accel::Tcg,
            memory_mib: 512,
            vcpus: 2,
            overlay: Path::new("/s/a,b/overlay.qcow2"),
            qmp: Path::new("/r/qmp.sock"),
            tap: None,
        });
        let line = v.join(" ");
        assert!(
            line.starts_with("qemu-system-x86_64 -name web -M q35 -accel tcg"),
            "{line}"
        );
        assert!(line.contains("-m 512 -smp 2"), "{line}");
        assert!(
            line.contains("file=/s/a,,b/overlay.qcow2,if=virtio"),
            "{line}"
        );
        assert!(
            line.contains("-qmp unix:/r/qmp.sock,server=on,wait=off"),
            "{line}"
        );
        assert!(line.contains("-netdev user,id=net0 -device virtio-net-pci"));
    }

    #[test]
    fn the_network_is_a_tap_or_nothing_when_asked() {
        let mut a = QemuArgs {
            name: "web",
            accel: Accel::Tcg,
            memory_mib: 512,
            vcpus: 1,
            overlay: Path::new("/o"),
            qmp: Path::new("/q"),
            tap: Some("vt1234-abcdef01"),
        };
        let line = argv(&a).join(" ");
        assert!(
            line.contains("-netdev tap,id=net0,ifname=vt1234-abcdef01,script=no,downscript=no -device virtio-net-pci,netdev=net0"),
            "{line}"
        );
        a.tap = Some("");
        let line = argv(&a).join(" ");
        assert!(
            !line.contains("-netdev") && !line.contains("virtio-net"),
            "{line}"
        );
    }
}
