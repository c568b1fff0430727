//! The cell's sandbox: fresh network, IPC and UTS namespaces shared by every
//! container of the cell, like a Kubernetes pod sandbox. Instead of a pause
//! process, the namespaces are pinned by bind-mounting their nsfs files (as
//! `ip netns` and CRI-O's pinns do): they live until the daemon unmounts the
//! files and the last container is gone, cost no process and no memory.
//!
//! The namespaces are made by a short-lived thread of the daemon: unshare(2)
//! of these three namespaces affects the calling thread only, so the thread
//! unshares, names the host, brings `lo` up, bind-mounts its own
//! `/proc/thread-self/ns/*` onto the files, and exits.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// The nsfs files the containers join by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespacePaths {
    pub net: PathBuf,
    pub ipc: PathBuf,
    pub uts: PathBuf,
}

impl NamespacePaths {
    pub fn under(dir: &Path) -> Self {
        Self {
            net: dir.join("net"),
            ipc: dir.join("ipc"),
            uts: dir.join("uts"),
        }
    }

    fn each(&self) -> [(&'static str, &Path); 3] {
        [("net", &self.net), ("ipc", &self.ipc), ("uts", &self.uts)]
    }
}

/// Creates the cell's namespaces, pinned by files in `dir` (created here).
pub(crate) fn create(dir: &Path, hostname: &str) -> io::Result<NamespacePaths> {
    fs::create_dir_all(dir)?;
    let paths = NamespacePaths::under(dir);
    for (_, file) in paths.each() {
        File::create(file)?;
    }
    let hostname = hostname.to_string();
    let for_thread = paths.clone();
    // A thread of its own, never reused: its namespaces differ from the daemon's.
    let result = std::thread::Builder::new()
        .name("cell-sandbox".into())
        .spawn(move || pin_from_this_thread(&for_thread, &hostname))?
        .join()
        .map_err(|_| io::Error::other("the sandbox thread panicked"))?;
    if let Err(e) = result {
        release(&paths);
        return Err(e);
    }
    Ok(paths)
}

fn pin_from_this_thread(paths: &NamespacePaths, hostname: &str) -> io::Result<()> {
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
        .map_err(|e| io::Error::other(format!("unshare(net, ipc, uts): {e}")))?;
    nix::unistd::sethostname(hostname)
        .map_err(|e| io::Error::other(format!("sethostname({hostname:?}): {e}")))?;
    loopback_up().map_err(|e| io::Error::other(format!("bringing lo up: {e}")))?;
    for (kind, file) in paths.each() {
        let source = format!("/proc/thread-self/ns/{kind}");
        mount(
            Some(source.as_str()),
            file,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            io::Error::other(format!("bind-mounting {source} on {}: {e}", file.display()))
        })?;
    }
    Ok(())
}

/// `ip link set lo up` in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    let (sock, mut req) = loopback_request()?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads ifr_name and ifr_flags of `req`, which we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A socket and `lo`'s current flags (SIOCGIFFLAGS) in the thread's network namespace.
fn loopback_request() -> io::Result<(OwnedFd, libc::ifreq)> {
    // SAFETY: socket(2) has no memory-safety preconditions; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes the flags of `req`, which we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((sock, req))
}

/// Whether `lo` is up in the calling thread's network namespace.
#[cfg(test)]
fn loopback_is_up() -> io::Result<bool> {
    let (_sock, req) = loopback_request()?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(flags & libc::IFF_UP as libc::c_short != 0)
}

/// Unmounts and removes the pinning files; the namespaces go once no
/// container is left in them. Missing files are fine.
pub(crate) fn release(paths: &NamespacePaths) {
    for (kind, file) in paths.each() {
        match umount2(file, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                tracing::warn!(namespace = kind, file = %file.display(), error = %e, "unmounting a cell namespace")
            }
        }
        match fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "removing a cell namespace file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn paths_are_one_file_per_namespace() {
        let p = NamespacePaths::under(Path::new("/r/ns"));
        assert_eq!(p.net, Path::new("/r/ns/net"));
        assert_eq!(p.ipc, Path::new("/r/ns/ipc"));
        assert_eq!(p.uts, Path::new("/r/ns/uts"));
    }

    /// Root only: the pinned namespaces differ from the daemon's, carry the
    /// hostname and an up loopback, and go away on release.
    #[test]
    fn pins_fresh_namespaces_and_releases_them() {
        if !crate::test_support::require_root(
            "pins_fresh_namespaces_and_releases_them",
            "unshare, bind mounts",
        ) {
            return;
        }
        let dir = tempfile::TempDir::new().expect("tempdir");
        let ns = dir.path().join("ns");
        let paths = create(&ns, "sandbox-test").expect("create");
        for (kind, file) in paths.each() {
            let pinned = fs::metadata(file).expect("pinned").ino();
            let ours = fs::metadata(format!("/proc/self/ns/{kind}"))
                .expect("ours")
                .ino();
            assert_ne!(pinned, ours, "{kind} namespace is a fresh one");
        }
        // Join the UTS and net namespaces from a throwaway thread and look.
        let p = paths.clone();
        let (host, lo_up) = std::thread::spawn(move || {
            let uts = File::open(&p.uts).expect("open uts");
            nix::sched::setns(&uts, CloneFlags::CLONE_NEWUTS).expect("setns uts");
            let net = File::open(&p.net).expect("open net");
            nix::sched::setns(&net, CloneFlags::CLONE_NEWNET).expect("setns net");
            let host = nix::unistd::gethostname().expect("hostname");
            (host, loopback_is_up().expect("lo flags"))
        })
        .join()
        .expect("join");
        assert_eq!(host.to_string_lossy(), "sandbox-test");
        assert!(lo_up, "lo is up in the cell's network namespace");
        release(&paths);
        for (_, file) in paths.each() {
            assert!(!file.exists(), "{} removed", file.display());
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounts.contains(&ns.display().to_string()), "{mounts}");
    }
}
