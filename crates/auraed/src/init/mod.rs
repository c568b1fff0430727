//! auraed as PID 1 of an instance (a micro-VM the parent spawned): brings
//! the system up from the initramfs, then runs the daemon and supervises it.
//!
//! In order: leave rootfs for a tmpfs (rootfs.rs), mount the system
//! filesystems and cgroup2 (mounts.rs), read the kernel command line
//! (cmdline.rs), set the host name, load the image's kernel modules
//! (modules.rs), configure the network (net.rs), mount the image share,
//! then start the daemon (supervisor.rs). Any error is printed on the
//! console and the instance powers off: the parent sees QEMU exit.

mod cmdline;
mod error;
mod kernel;
mod modules;
mod mounts;
mod net;
mod rootfs;
mod supervisor;

use std::path::Path;
use std::time::Duration;

pub use cmdline::{BootParams, IpConfig, DEFAULT_PORT};
pub use error::InitError;
pub use mounts::PRELOAD_DIR;

use self::kernel::{Kernel, Linux};
use self::modules::{ModuleDeps, BOOT_MODULES, PRELOAD_MODULES};

/// How long the network device may take to appear after its driver loads.
const LINK_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether this process is PID 1 (the kernel started it as init).
pub fn is_pid1() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// One line on the console, where an instance's PID 1 reports.
pub(crate) fn say(msg: &str) {
    eprintln!("auraed-init: {msg}");
}

/// PID 1's life: never returns, never panics into the kernel.
pub fn run() -> ! {
    std::panic::set_hook(Box::new(|info| {
        say(&format!("panic: {info}"));
        supervisor::power_off();
    }));
    say("starting");
    match boot(&mut Linux) {
        Ok(args) => {
            say(&format!("system up: starting auraed {}", args.join(" ")));
            supervisor::supervise(args)
        }
        Err(e) => {
            say(&format!("error: {}", crate::error_chain::chain(&e)));
            supervisor::power_off()
        }
    }
}

/// Brings the system up; returns the daemon's arguments.
fn boot(k: &mut Linux) -> Result<Vec<String>, InitError> {
    let all = mounts::system_mounts();
    let (proc_mount, rest) = all
        .split_first()
        .ok_or_else(|| InitError::Cmdline("no mounts".into()))?;
    mounts::mount_all(k, std::slice::from_ref(proc_mount))?;
    let mountinfo = k
        .read(Path::new("/proc/self/mountinfo"))
        .map_err(InitError::io("reading /proc/self/mountinfo"))?;
    if rootfs::on_rootfs(&mountinfo) {
        nix::mount::umount("/proc").map_err(|e| InitError::io("unmounting /proc")(e.into()))?;
        match rootfs::switch_to_tmpfs()? {}
    }
    mounts::mount_all(k, rest)?;
    mounts::enable_controllers(k)?;
    let cmdline = k
        .read(Path::new("/proc/cmdline"))
        .map_err(InitError::io("reading /proc/cmdline"))?;
    say(&format!("kernel command line: {}", cmdline.trim()));
    let params = BootParams::parse(&cmdline)?;
    std::env::set_var(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );

    // Before the drivers load, so that the device's arrival is an event.
    let mut links = net::Rtnetlink::open()?;
    let release = k
        .read(Path::new("/proc/sys/kernel/osrelease"))
        .map_err(InitError::io("reading the kernel release"))?;
    let deps = ModuleDeps::read(&Path::new("/lib/modules").join(release.trim()))?;
    deps.load(BOOT_MODULES, &cmdline, k)?;
    let mut args = vec!["--stop-workloads-at-exit".to_string()];
    if let Some(ip) = &params.ip {
        k.set_hostname(&ip.hostname)
            .map_err(InitError::io("setting the host name"))?;
        net::configure(&mut links, ip, LINK_TIMEOUT)?;
        args.extend([
            "--listen".to_string(),
            format!("{}:{}", ip.address, params.port),
            "--name".to_string(),
            ip.hostname.clone(),
        ]);
    }
    if let Some(tag) = &params.preload {
        deps.load(PRELOAD_MODULES, &cmdline, k)?;
        mounts::mount_all(k, &[mounts::preload_mount(tag)])?;
    }
    Ok(args)
}
