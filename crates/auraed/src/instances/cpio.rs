//! The per-instance part of an instance's initramfs: a newc cpio archive
//! (the format the kernel unpacks, `Documentation/driver-api/early-userspace/buffer-format.rst`)
//! appended to the shared base image. The kernel unpacks concatenated
//! archives in order, so the instance's own files land on top of the base.
//!
//! It carries the instance's PKI at the daemon's default paths, so the
//! nested auraed needs no PKI flags: the CA certificate, and the server
//! certificate and key the parent issued for this instance alone (never
//! the parent's own key).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CpioError {
    #[error("{0:?} is not a relative path inside the archive")]
    BadPath(String),
    #[error("{what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// One member of an archive; paths are relative (`etc/aurae`), parents first.
pub enum Entry<'a> {
    Dir {
        path: &'a str,
        mode: u32,
    },
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const TRAILER: &str = "TRAILER!!!";

/// The instance's certificates (PEM), as the parent issued them.
pub struct InstancePki<'a> {
    pub ca_crt: &'a [u8],
    pub server_crt: &'a [u8],
    pub server_key: &'a [u8],
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, size: usize, name: &str) {
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        size as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn check_path(path: &str) -> Result<(), CpioError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(CpioError::BadPath(path.to_string()))
    }
}

/// A complete newc archive of `entries` (owned by root, mtime 0, so the
/// same entries always give the same bytes).
pub fn newc(entries: &[Entry]) -> Result<Vec<u8>, CpioError> {
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match entry {
            Entry::Dir { path, mode } => {
                check_path(path)?;
                header(&mut out, ino, S_IFDIR | (mode & 0o7777), 2, 0, path);
            }
            Entry::File { path, mode, data } => {
                check_path(path)?;
                let size =
                    u32::try_from(data.len()).map_err(|_| CpioError::BadPath(path.to_string()))?;
                header(
                    &mut out,
                    ino,
                    S_IFREG | (mode & 0o7777),
                    1,
                    size as usize,
                    path,
                );
                out.extend_from_slice(data);
                pad4(&mut out);
            }
        }
    }
    header(&mut out, 0, 0, 1, 0, TRAILER);
    Ok(out)
}

/// The archive of an instance's PKI at the daemon's default paths.
pub fn pki_archive(pki: &InstancePki) -> Result<Vec<u8>, CpioError> {
    newc(&[
        Entry::Dir {
            path: "etc",
            mode: 0o755,
        },
        Entry::Dir {
            path: "etc/aurae",
            mode: 0o755,
        },
        Entry::Dir {
            path: "etc/aurae/pki",
            mode: 0o755,
        },
        Entry::File {
            path: "etc/aurae/pki/ca.crt",
            mode: 0o644,
            data: pki.ca_crt,
        },
        Entry::File {
            path: "etc/aurae/pki/_signed.server.crt",
            mode: 0o644,
            data: pki.server_crt,
        },
        Entry::File {
            path: "etc/aurae/pki/server.key",
            mode: 0o600,
            data: pki.server_key,
        },
    ])
}

/// Writes `out` (mode 0600: it holds the instance's key) as the base
/// image `base` followed by the instance's PKI archive: the initramfs
/// QEMU loads for this instance.
pub fn write_instance_initramfs(
    base: &Path,
    pki: &InstancePki,
    out: &Path,
) -> Result<(), CpioError> {
    let io = |what: String| move |source| CpioError::Io { what, source };
    let archive = pki_archive(pki)?;
    let mut input = std::fs::File::open(base).map_err(io(format!("opening {}", base.display())))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .map_err(io(format!("creating {}", out.display())))?;
    let written =
        std::io::copy(&mut input, &mut file).map_err(io(format!("copying {}", base.display())))?;
    // Each archive starts on a 4-byte boundary; the kernel skips zero padding.
    let padding = [0u8; 3];
    let pad = (4 - (written % 4) as usize) % 4;
    file.write_all(&padding[..pad])
        .and_then(|()| file.write_all(&archive))
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing {}", out.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKI: InstancePki = InstancePki {
        ca_crt: b"CA PEM\n",
        server_crt: b"SERVER PEM\n",
        server_key: b"KEY\n",
    };

    #[test]
    fn paths_that_leave_the_archive_are_refused() {
        for bad in ["/etc/x", "../x", "etc/../x", "", "etc//x", "a\0b"] {
            let e = newc(&[Entry::Dir {
                path: bad,
                mode: 0o755,
            }]);
            assert!(matches!(e, Err(CpioError::BadPath(_))), "{bad:?}");
        }
    }

    #[test]
    fn cpio_reads_what_the_writer_wrote() {
        let Ok(cpio) = which("cpio") else {
            return crate::test_support::skip(
                "cpio_reads_what_the_writer_wrote",
                "no cpio tool (apt-get install cpio)",
            );
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base.cpio");
        // A base of an odd length: the appended archive must still be aligned.
        let mut base_bytes = newc(&[Entry::File {
            path: "init",
            mode: 0o755,
            data: b"#!x",
        }])
        .expect("base");
        base_bytes.extend_from_slice(&[0, 0, 0]);
        std::fs::write(&base, &base_bytes).expect("base");
        let out = dir.path().join("instance.cpio");
        write_instance_initramfs(&base, &PKI, &out).expect("writes");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).expect("out").permissions().mode() & 0o777,
            0o600
        );

        let all = std::fs::read(&out).expect("read");
        assert_eq!(all.len() % 4, 0);
        let second = &all[(base_bytes.len() + 3) & !3..];
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root");
        let mut child = std::process::Command::new(cpio)
            .args(["-id", "--quiet"])
            .current_dir(&root)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("cpio");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(second)
            .expect("feed");
        assert!(child.wait().expect("cpio").success());
        let pki = root.join("etc/aurae/pki");
        assert_eq!(std::fs::read(pki.join("ca.crt")).expect("ca"), PKI.ca_crt);
        assert_eq!(
            std::fs::read(pki.join("_signed.server.crt")).expect("crt"),
            PKI.server_crt
        );
        assert_eq!(
            std::fs::read(pki.join("server.key")).expect("key"),
            PKI.server_key
        );
        let key_mode = std::fs::metadata(pki.join("server.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
    }

    #[test]
    fn the_same_pki_gives_the_same_bytes() {
        assert_eq!(pki_archive(&PKI).expect("a"), pki_archive(&PKI).expect("b"));
    }

    fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
        ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .ok_or(())
    }
}
