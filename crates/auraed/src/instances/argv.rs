//! The QEMU command line of an instance: `-M pc` booting the instance
//! image's kernel directly (PVH, SeaBIOS skipped) with the per-instance
//! initramfs (why not microvm: docs/instances.md), its
//! network on the kernel command line (read by the nested auraed, PID 1),
//! one virtio-net on its TAP, and optionally the parent's image hand-over
//! as a read-only 9p share. Console and QMP as for VMs. The final form is
//! documented in docs/instances.md.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::vms::accel::Accel;
use crate::vms::qemu::{console_args, qemu_escape, qmp_args, QEMU};

/// The port the nested auraed serves gRPC (mTLS) on.
pub const INSTANCE_PORT: u16 = 8080;
/// The 9p mount tag of the image hand-over (see the guest's PID 1).
pub const PRELOAD_TAG: &str = "aurae-images";

pub struct BootArgs<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub name: &'a str,
    pub accel: Accel,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub tap: &'a str,
    pub mac: &'a str,
    pub qmp: &'a Path,
    /// A directory shared read-only as [`PRELOAD_TAG`].
    pub preload: Option<&'a Path>,
}

/// The kernel command line.
pub fn cmdline(a: &BootArgs<'_>) -> String {
    let mut line = format!(
        "console=ttyS0 reboot=t panic=-1 quiet ip={}::{}:{}:{}:eth0:off aurae.port={INSTANCE_PORT}",
        a.address, a.gateway, a.netmask, a.name
    );
    if a.preload.is_some() {
        line.push_str(&format!(" aurae.preload={PRELOAD_TAG}"));
    }
    line
}

pub fn argv(a: &BootArgs<'_>) -> Vec<String> {
    let mut v: Vec<String> = vec![
        QEMU.into(),
        "-name".into(),
        a.name.into(),
        "-M".into(),
        "pc".into(),
        "-accel".into(),
        a.accel.qemu_name().into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-cpu".into(),
        "max".into(),
        "-m".into(),
        a.memory_mib.to_string(),
        "-smp".into(),
        a.vcpus.to_string(),
        "-kernel".into(),
        qemu_escape(a.kernel),
        "-initrd".into(),
        qemu_escape(a.initrd),
        "-append".into(),
        cmdline(a),
    ];
    v.extend(console_args());
    v.extend([
        "-netdev".into(),
        format!("tap,id=n0,ifname={},script=no,downscript=no", a.tap),
        "-device".into(),
        // No iPXE option ROM: nothing boots from the network.
        format!("virtio-net-pci,netdev=n0,mac={},romfile=", a.mac),
    ]);
    if let Some(dir) = a.preload {
        v.extend([
            "-fsdev".into(),
            format!(
                "local,id=f0,path={},security_model=none,readonly=on",
                qemu_escape(dir)
            ),
            "-device".into(),
            format!("virtio-9p-pci,fsdev=f0,mount_tag={PRELOAD_TAG}"),
        ]);
    }
    v.extend(qmp_args(a.qmp));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(preload: Option<&'a Path>) -> BootArgs<'a> {
        BootArgs {
            kernel: Path::new("/i/vmlinux"),
            initrd: Path::new("/s/web/initramfs.cpio"),
            name: "web",
            accel: Accel::Tcg,
            memory_mib: 256,
            vcpus: 2,
            address: Ipv4Addr::new(10, 92, 0, 2),
            gateway: Ipv4Addr::new(10, 92, 0, 1),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            tap: "vt1234-abcdef01",
            mac: "52:54:00:5c:00:02",
            qmp: Path::new("/r/web/qmp.sock"),
            preload,
        }
    }

    #[test]
    fn the_command_line_is_the_contract_s() {
        let line = argv(&args(None)).join(" ");
        assert!(
            line.starts_with("qemu-system-x86_64 -name web -M pc -accel tcg -nodefaults -no-user-config -nographic -no-reboot -cpu max -m 256 -smp 2 -kernel /i/vmlinux -initrd /s/web/initramfs.cpio"),
            "{line}"
        );
        assert!(
            line.contains("ip=10.92.0.2::10.92.0.1:255.255.255.0:web:eth0:off aurae.port=8080"),
            "{line}"
        );
        assert!(line.contains("-netdev tap,id=n0,ifname=vt1234-abcdef01,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=52:54:00:5c:00:02,romfile="), "{line}");
        assert!(
            line.contains("-qmp unix:/r/web/qmp.sock,server=on,wait=off"),
            "{line}"
        );
        assert!(
            !line.contains("9p") && !line.contains("aurae.preload"),
            "{line}"
        );
    }

    #[test]
    fn the_image_hand_over_is_a_read_only_9p_share() {
        let v = argv(&args(Some(Path::new("/s/web/images"))));
        let append = &v[v.iter().position(|a| a == "-append").expect("append") + 1];
        assert!(append.ends_with(" aurae.preload=aurae-images"), "{append}");
        let line = v.join(" ");
        assert!(line.contains("-fsdev local,id=f0,path=/s/web/images,security_model=none,readonly=on -device virtio-9p-pci,fsdev=f0,mount_tag=aurae-images"), "{line}");
    }
}
