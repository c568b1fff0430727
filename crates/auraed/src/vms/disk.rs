//! Disk files: what `qemu-img info` says a downloaded image is, and the
//! per-VM copy-on-write overlay over a cached, pristine base.

use std::path::Path;

use serde::Deserialize;
use tokio::process::Command;

use super::error::VmError;

/// Formats a VM may boot from.
pub const FORMATS: &[&str] = &["qcow2", "raw"];

/// The part of `qemu-img info --output=json` that matters here.
#[derive(Debug, Deserialize)]
struct Info {
    format: String,
    #[serde(rename = "virtual-size", default)]
    virtual_size: u64,
    #[serde(rename = "backing-filename", default)]
    backing_filename: Option<String>,
}

/// Checks that `path` is a disk image QEMU can boot from and returns its
/// format. A qcow2 may not name a backing file (it would make QEMU read a
/// file of the host's choosing); a raw image must carry a boot signature
/// (0x55AA at byte 510: MBR, GPT's protective MBR or a boot sector), since
/// `qemu-img` calls any file at all "raw".
pub async fn inspect(image: &str, path: &Path) -> Result<String, VmError> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(path)
        .output()
        .await
        .map_err(|e| VmError::io("running qemu-img (is qemu-utils installed?)", e))?;
    let not_a_disk = |detail: String| VmError::NotADisk {
        image: image.to_string(),
        detail,
    };
    if !out.status.success() {
        return Err(not_a_disk(format!(
            "qemu-img info: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let info: Info = serde_json::from_slice(&out.stdout)
        .map_err(|e| not_a_disk(format!("unreadable qemu-img info output: {e}")))?;
    check(&info, path).map_err(not_a_disk)?;
    Ok(info.format)
}

fn check(info: &Info, path: &Path) -> Result<(), String> {
    if !FORMATS.contains(&info.format.as_str()) {
        return Err(format!(
            "its format is {}; only {} are accepted",
            info.format,
            FORMATS.join(" and ")
        ));
    }
    if let Some(b) = &info.backing_filename {
        return Err(format!("it names a backing file ({b}): refused"));
    }
    if info.virtual_size == 0 {
        return Err("it is empty".into());
    }
    if info.format == "raw" && !has_boot_signature(path) {
        return Err(
            "it is neither qcow2 nor a raw disk with a boot sector (no 0x55AA signature at byte 510)"
                .into(),
        );
    }
    Ok(())
}

fn has_boot_signature(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut sig = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(510))?;
            f.read_exact(&mut sig)
        })
        .is_ok()
        && sig == [0x55, 0xAA]
}

/// Creates the VM's qcow2 overlay backed by `base` (which QEMU then only reads).
pub async fn create_overlay(base: &Path, format: &str, overlay: &Path) -> Result<(), VmError> {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(base)
        .arg(overlay)
        .output()
        .await
        .map_err(|e| VmError::io("running qemu-img (is qemu-utils installed?)", e))?;
    if !out.status.success() {
        return Err(VmError::io(
            format!("creating the overlay {}", overlay.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(format: &str, backing: Option<&str>) -> Info {
        Info {
            format: format.into(),
            virtual_size: 1 << 20,
            backing_filename: backing.map(str::to_string),
        }
    }

    #[test]
    fn only_bootable_formats_without_backing_files_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = dir.path().join("text");
        std::fs::write(&text, "not a disk\n".repeat(100)).expect("write");
        let mut mbr = vec![0u8; 1024];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        let disk = dir.path().join("disk");
        std::fs::write(&disk, &mbr).expect("write");

        assert!(check(&info("qcow2", None), &text).is_ok());
        assert!(check(&info("raw", None), &disk).is_ok());
        let e = check(&info("raw", None), &text).expect_err("text");
        assert!(e.contains("boot sector"), "{e}");
        let e = check(&info("qcow2", Some("/etc/shadow")), &text).expect_err("backing");
        assert!(e.contains("/etc/shadow"), "{e}");
        let e = check(&info("vmdk", None), &text).expect_err("vmdk");
        assert!(e.contains("vmdk"), "{e}");
    }
}
