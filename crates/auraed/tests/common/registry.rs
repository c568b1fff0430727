//! The registry fixture (hack/registry-up.sh, hack/build-test-images.sh),
//! shared by every test that pulls images. Included by path from the test
//! support modules, since each test file is its own crate.

use std::io::{Read, Write};
use std::time::Duration;

/// The test registry of hack/registry-up.sh and hack/build-test-images.sh.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// True when the registry fixture answers (and we are root); otherwise says
/// why the test is skipped, or fails on CI, where the fixture must be there.
pub fn require_registry(test: &str) -> bool {
    let probe = || -> Result<(), String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root (mounts, namespaces, cgroups)".into());
        }
        let addr: std::net::SocketAddr = REGISTRY.parse().map_err(|e| format!("{e}"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("no registry answers at {REGISTRY} ({e})"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        write!(s, "HEAD /v2/aurae/busybox/manifests/latest HTTP/1.0\r\nHost: {REGISTRY}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        if answer.contains(" 200 ") {
            Ok(())
        } else {
            Err(format!(
                "the registry at {REGISTRY} has no aurae/busybox:latest"
            ))
        }
    };
    match probe() {
        Ok(()) => true,
        Err(why) => {
            let msg =
                format!("{test}: {why}: run hack/registry-up.sh and hack/build-test-images.sh");
            if std::env::var_os("CI").is_some() {
                panic!("{msg}");
            }
            eprintln!("skipping {msg}");
            false
        }
    }
}
