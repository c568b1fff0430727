//! The QEMU command line of a VM: q35, the chosen accelerator, the overlay
//! as a virtio disk, user-mode networking, the serial console on stdout
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
        // The console: stdout is the VM's log; no input from the daemon.
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
        // Empty romfile: no iPXE option ROM needed (nor always installed).
        "-netdev",
        "user,id=net0",
        "-device",
        "virtio-net-pci,netdev=net0,romfile=",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
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
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qemu_escape(a.qmp)),
    ]);
    v
}

/// QEMU option values separate with ','; a literal comma is doubled.
fn qemu_escape(p: &Path) -> String {
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
    }
}
