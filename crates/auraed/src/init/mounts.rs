//! The filesystems of a running system, as systemd mounts them, and a
//! cgroup v2 hierarchy whose controllers reach the daemon's workloads.

use std::path::Path;

use nix::mount::MsFlags;

use super::kernel::{Kernel, Mount};
use super::InitError;

/// Where the image share (`aurae.preload`) is mounted, read-only.
pub const PRELOAD_DIR: &str = "/var/lib/aurae/images-preload";

fn mount(
    source: &'static str,
    target: &str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&str>,
) -> Mount {
    Mount {
        source: source.to_string(),
        target: target.to_string(),
        fstype,
        flags,
        data: data.map(str::to_string),
    }
}

/// In order: each target lies on a filesystem mounted before it.
pub fn system_mounts() -> Vec<Mount> {
    let hard = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let tmp = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    vec![
        mount("proc", "/proc", "proc", hard, None),
        mount("sysfs", "/sys", "sysfs", hard, None),
        mount(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        mount(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ),
        mount("tmpfs", "/dev/shm", "tmpfs", tmp, Some("mode=1777")),
        mount("tmpfs", "/run", "tmpfs", tmp, Some("mode=0755")),
        mount("tmpfs", "/tmp", "tmpfs", tmp, Some("mode=1777")),
        mount(
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            hard,
            Some("nsdelegate"),
        ),
    ]
}

/// The 9p share the parent offers under `tag`, read-only.
pub fn preload_mount(tag: &str) -> Mount {
    Mount {
        // A virtio-9p share is named by its mount tag.
        source: tag.to_string(),
        target: PRELOAD_DIR.to_string(),
        fstype: "9p",
        flags: MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        data: Some("trans=virtio,version=9p2000.L,cache=loose".to_string()),
    }
}

pub fn mount_all(kernel: &mut dyn Kernel, mounts: &[Mount]) -> Result<(), InitError> {
    for m in mounts {
        kernel.mount(m).map_err(InitError::io(format!(
            "mounting {} on {}",
            m.fstype, m.target
        )))?;
    }
    Ok(())
}

/// Every controller the kernel offers, enabled for the root's children:
/// the daemon's workload cgroups get limits and accounting.
pub fn enable_controllers(kernel: &mut dyn Kernel) -> Result<(), InitError> {
    let root = Path::new("/sys/fs/cgroup");
    let offered = kernel
        .read(&root.join("cgroup.controllers"))
        .map_err(InitError::io("reading the cgroup controllers"))?;
    let enable: Vec<String> = offered
        .split_ascii_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if enable.is_empty() {
        return Ok(());
    }
    kernel
        .write(&root.join("cgroup.subtree_control"), &enable.join(" "))
        .map_err(InitError::io("enabling the cgroup controllers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<String>);
    impl Kernel for Recorder {
        fn mount(&mut self, m: &Mount) -> std::io::Result<()> {
            self.0.push(format!("mount {} {}", m.fstype, m.target));
            Ok(())
        }
        fn read(&mut self, path: &Path) -> std::io::Result<String> {
            self.0.push(format!("read {}", path.display()));
            Ok("cpuset cpu io memory pids\n".into())
        }
        fn write(&mut self, path: &Path, data: &str) -> std::io::Result<()> {
            self.0.push(format!("write {} {data}", path.display()));
            Ok(())
        }
        fn set_hostname(&mut self, _: &str) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_mount_point_lies_on_an_earlier_mount() {
        let mounts = system_mounts();
        for (i, m) in mounts.iter().enumerate() {
            let parent = Path::new(&m.target).parent().expect("parent");
            if parent != Path::new("/") {
                assert!(
                    mounts[..i].iter().any(|e| parent.starts_with(&e.target)),
                    "{} is mounted before its parent",
                    m.target
                );
            }
        }
        let mut r = Recorder::default();
        mount_all(&mut r, &mounts).expect("mounts");
        assert_eq!(r.0.first().map(String::as_str), Some("mount proc /proc"));
        assert_eq!(
            r.0.last().map(String::as_str),
            Some("mount cgroup2 /sys/fs/cgroup")
        );
    }

    #[test]
    fn every_offered_controller_is_enabled_for_the_workloads() {
        let mut r = Recorder::default();
        enable_controllers(&mut r).expect("enables");
        assert_eq!(
            r.0[1],
            "write /sys/fs/cgroup/cgroup.subtree_control +cpuset +cpu +io +memory +pids"
        );
    }

    #[test]
    fn the_image_share_is_read_only() {
        let m = preload_mount("aurae-images");
        assert!(m.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(
            (m.source.as_str(), m.target.as_str()),
            ("aurae-images", PRELOAD_DIR)
        );
    }
}
